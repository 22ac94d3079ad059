-- Kinds of Emlite meter hardware: the one description of what each model is.
-- Everything that needs to know whether a meter is three phase, twin element or
-- able to prepay reads it here (flows.is_three_phase, the claim that hands
-- commands to workers); the EMOP client, which has no database, carries a copy
-- in workers/flows/emop/values.py (HARDWARE_KINDS) that tests/worker/test_contract.py
-- holds equal to these rows. Changed by migrations only, like the EMOP protocol.
CREATE TABLE flows.hardware_kinds (
    model          text     PRIMARY KEY,
    phases         smallint NOT NULL,
    elements       smallint NOT NULL,
    prepay_capable boolean  NOT NULL,
    serial_prefix  text,
    version_texts  text[]   NOT NULL DEFAULT '{}',
    description    text     NOT NULL,
    CONSTRAINT hardware_kinds_phases_valid CHECK (phases IN (1, 3)),
    CONSTRAINT hardware_kinds_elements_valid CHECK (elements IN (1, 2)),
    CONSTRAINT hardware_kinds_serial_prefix_key UNIQUE (serial_prefix)
);
COMMENT ON TABLE flows.hardware_kinds IS
    'Emlite meter models (meter_registry.hardware): phases, metering elements, prepayment. Mirrored in emop/values.py.';
COMMENT ON COLUMN flows.hardware_kinds.elements IS
    'Metering elements read separately: 2 = A and B (twin element); three-phase meters report totals as element A.';
COMMENT ON COLUMN flows.hardware_kinds.serial_prefix IS
    'Serials that name the model without asking the meter (EMP1AX...); single-phase models share EML.';
COMMENT ON COLUMN flows.hardware_kinds.version_texts IS
    'What the meter''s hardware_version object says for this model (three-phase meters have none).';

INSERT INTO flows.hardware_kinds (model, phases, elements, prepay_capable, serial_prefix, version_texts, description)
VALUES
    ('C1.w',   1, 2, true,  NULL,     '{6C,6Cw}', 'single phase, twin element (A and B)'),
    ('B1.w',   1, 1, true,  NULL,     '{6Bw}',    'single phase, single element'),
    ('EMA1.w', 1, 1, true,  NULL,     '{3Aw}',    'single phase, single element'),
    ('SINGLE_PHASE_UNKNOWN', 1, 1, true, NULL, '{}', 'single phase, hardware_version not recognised: read as one element'),
    ('P1.ax',  3, 1, false, 'EMP1AX', '{}',       'three phase, whole current; no prepayment, tariffs or profile log 1'),
    ('P1.cx',  3, 1, false, 'EMP1CX', '{}',       'three phase, CT operated; no prepayment, tariffs or profile log 1');
