"""The sample ESCO of the tenancy tests: one ESCO with something in every
table, composed from the product's factories (flows.factories).

The read and write matrices (tests/test_rls.py, tests/test_rls_writes.py)
build two of these and check, relation by relation and function by function,
that each role sees and changes exactly its share. A new table or view needs
rows here (a factory call below), or those tests fail for lack of data.
"""

from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from flows import factories as f
from flows.billing.documents import render_invoice
from tests.support.bank_factory import BankData, build_bank
from tests.support.billing_factory import BillingData, build_billing
from tests.support.money_factory import MoneyData, build_money

TARIFF = {"standing_charge": "0.6975", "unit_rate_element_a": "0.24567", "unit_rate_element_b": "0.12",
          "prepayment_ecredit_availability": "5", "prepayment_debt_recovery_rate": "0.5",
          "prepayment_emergency_credit": "10"}


@dataclass
class SampleEsco:
    code: str
    esco: str = ""
    site: str = ""
    properties: list[str] = field(default_factory=list)
    feeder: str = ""
    heads: list[str] = field(default_factory=list)
    meters: list[str] = field(default_factory=list)  # twin element (C1.w), single element (B1.w), three phase
    registers: dict[str, list[str]] = field(default_factory=dict)  # meter -> register ids (element order)
    circuits: list[str] = field(default_factory=list)
    circuit_registers: list[str] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)  # "token" (pending), "tariff.0", "tariff.1"
    api_key: str = ""  # an integration's key (flows.api_keys)
    billing: BillingData = field(default_factory=BillingData)  # customers, tariffs, statements
    money: MoneyData = field(default_factory=MoneyData)  # payments, top-ups, gifts, solar credit, wallet
    bank: BankData = field(default_factory=BankData)  # bank account, statement, matched and queued entries
    workers: list[str] = field(default_factory=list)  # a worker serving this ESCO only
    notifications: dict[str, str] = field(default_factory=dict)  # "low_balance" (pending), "dead" (a dead letter)
    consent: str = ""  # the owner-occupier's half-hourly consent (gdpr.consents)
    prospect: str = ""  # a customer invited who never moved in, erased at their request
    erasure: str = ""  # that erasure (gdpr.erasures)

    def ids(self) -> set[str]:
        """Every id this ESCO's rows carry."""
        return {value for label, value in self.labelled().items() if label != "code"}

    def labelled(self) -> dict[str, str]:
        """Every id (and the ESCO code) by what it is: "esco", "meters.0", "registers.0.1", ...
        Two sample ESCOs have the same labels, so a label maps one ESCO's row to the other's."""
        found = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, str):
                found[spec.name] = value
            elif isinstance(value, list):
                found.update({f"{spec.name}.{i}": v for i, v in enumerate(value)})
            elif is_dataclass(value):
                found.update({f"{spec.name}.{k}": v for k, v in _labelled(value).items()})
            elif spec.name == "registers":
                found.update({f"registers.{self.meters.index(m)}.{i}": r
                              for m, rs in value.items() for i, r in enumerate(rs)})
            else:
                found.update({f"{spec.name}.{k}": v for k, v in value.items()})
        return found

    def customer_ids(self) -> set[str]:
        """What the customer of the first property may see: its property, the
        head and the meters behind it (twin element and three phase), their
        registers, the ESCO and site they point at, and their own billing rows."""
        meters = [self.meters[0], self.meters[2]]
        registers = [r for m in meters for r in self.registers[m]]
        return {self.esco, self.site, self.properties[0], self.heads[0], *meters, *registers,
                *self.billing.customer_ids(), *self.money.customer_ids(), *self.bank.customer_ids(), self.consent}


def sample_esco(conn: psycopg.Connection, code: str | None = None) -> SampleEsco:
    """Create an ESCO with topology, three meters, state, history, readings and commands.

    Run as a superuser (or admin); times are relative to now so that the
    monitoring views have something to show.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    since = now - timedelta(days=4)
    esco = f.add_esco(conn, code)
    data = SampleEsco(esco.code, esco=esco.id)
    data.site = f.add_site(conn, esco.id, "S1", "Site", capacity_kw=250)
    data.properties = [f.add_property(conn, data.site, plot, address="Street") for plot in ("P-01", "P-02")]
    data.feeder = f.add_feeder(conn, esco.id, "F1", substation="Sub 1", rating_amps=400)
    for i, name in enumerate(("H1", "H2")):
        data.heads.append(f.add_service_head(conn, esco.id, name, phase=i + 1, fuse_rating=100,
                                             feeder=data.feeder if i == 0 else None))
        f.link_property_head(conn, data.properties[i], data.heads[i])

    # Meters: twin element (A, B), single element, three phase; H1 feeds the twin and the three phase.
    for hardware, head in (("C1.w", 0), ("B1.w", 1), ("P1.ax", 0)):
        meter = f.add_meter(conn, esco.id, hardware=hardware, name=f"{hardware} meter", site=data.site,
                            registers_from=since)
        data.meters.append(meter.id)
        data.registers[meter.id] = meter.register_ids
        f.link_head_meter(conn, data.heads[head], meter.id)

    twin, single, three_phase = data.meters
    # A third home, nobody living there yet (its landlord owns it: billing_factory): H3 feeds it from the
    # three-phase meter.
    data.properties.append(f.add_property(conn, data.site, "P-03", address="Street"))
    data.heads.append(f.add_service_head(conn, esco.id, "H3", phase=3, fuse_rating=100))
    f.link_property_head(conn, data.properties[2], data.heads[2])
    f.link_head_meter(conn, data.heads[2], three_phase)
    data.circuits = [f.add_circuit(conn, data.site, name, kind) for kind, name in (("power", "Homes"),
                                                                                  ("heat", "Heat pumps"))]
    data.circuit_registers = [f.link_circuit_register(conn, data.circuits[0], data.registers[twin][0], since),
                              f.link_circuit_register(conn, data.circuits[1], data.registers[single][0], since)]

    # State five hours ago: offline for 3-24 hours; the twin is low on credit and drifting.
    seen = now - timedelta(hours=5)
    future = {**TARIFF, "unit_rate_element_a": "0.25", "activation_datetime": (now + timedelta(days=30)).isoformat()}
    f.record_states(conn, [
        {"meter_id": twin, "observed_at": seen, "balance": "4.5", "emergency_credit": "0", "csq": 17,
         "voltage": 239.8, "import_a": 1200.5, "export_a": 3.25, "import_b": 400.125, "export_b": 0,
         "health": "healthy", "tariffs_active": TARIFF, "tariffs_future": future,
         "clock_time_diff_seconds": 120, "backlight": "normal", "load_switch": "normal", "prepay_enabled": True},
        {"meter_id": single, "observed_at": seen, "balance": "52.31", "csq": 99, "voltage": 241,
         "import_a": 880, "health": "healthy", "tariffs_active": TARIFF, "clock_time_diff_seconds": -2},
        {"meter_id": three_phase, "observed_at": seen, "voltage_l1": 240.1, "voltage_l2": 239.5, "voltage_l3": 241.2,
         "import_a": 15000, "health": "unhealthy", "health_details": "NAK 5 on prepay_balance"},
    ])
    f.record_events(conn, twin, [now - timedelta(days=1), now - timedelta(hours=6)], [33, 34], [1, 1])

    # Commands: a token top-up (left pending) and a tariff rollout to two meters.
    data.commands["token"] = f.send_token(conn, twin, 10)
    for i, command in enumerate(f.set_future_tariff(conn, future, [twin, single])):
        data.commands[f"tariff.{i}"] = command

    # A worker that serves this ESCO only.
    # (a heartbeat interval longer than any test: its derived state stays 'running' while the matrices read it)
    data.workers = [f.add_worker(conn, escos=[esco.code], heartbeat=timedelta(hours=1))]

    # Half hours of the last two UK days, with gaps (so register_interval_hh_missing shows them).
    ids, times, imports, exports = [], [], [], []
    start = conn.execute("SELECT flows.uk_day_start(flows.uk_day(now()) - 2)").fetchone()[0]
    for meter, registers in data.registers.items():
        for register in registers:
            for k in range(96):
                if k % 17 == 5:
                    continue  # a missing half hour
                ids.append(register)
                times.append(start + timedelta(minutes=30 * k))
                imports.append(Decimal("0.1") + (k % 7) * Decimal("0.05"))
                exports.append(Decimal("0.01") if meter == twin else Decimal(0))
    f.record_half_hours(conn, ids, times, imports, exports)

    # An integration's API key (the audit trail then has rows of everything above).
    data.api_key = f.add_api_key(conn, data.code)

    # Customers, tariffs, last month's final statements and a rendered PDF.
    data.billing = build_billing(conn, data.esco, data.code, data.properties, render=render_invoice)
    # Payments, top-ups, gifts, solar credit and a wallet on those customers.
    data.money = build_money(conn, data.esco, data.code, data.properties, data.billing)

    # Notifications: operators to tell (offline after 3 hours: the two meters last reached five hours ago), the
    # owner-occupier's and the tenant's preferences (the tenant opted out of low balance), a fresh balance under
    # the threshold on the owner-occupier's meter, the rules run (low balance, statements ready, meters offline),
    # and the operators' text a dead letter.
    f.set_notification_settings(conn, esco.id, operator_emails=[f"ops@{data.code.lower()}.example"],
                                operator_phones=["+447700900123"], offline_hours=3)
    f.set_notification_preferences(conn, data.billing.customer, channels=["email"])
    f.set_notification_preferences(conn, data.billing.others["tenant.customer"], opted_out=["low_balance"])
    f.record_states(conn, [{"meter_id": twin, "observed_at": datetime.now(UTC), "balance": "4.25"}])
    f.queue_notifications(conn)
    outbox = {(rule, channel): str(id) for id, rule, channel in conn.execute(
        "SELECT id, rule, channel FROM flows.notification_outbox WHERE esco = %s AND rule IN ('low_balance',"
        " 'meter_offline') ORDER BY created_at", (esco.id,))}
    data.notifications["low_balance"] = outbox["low_balance", "email"]
    data.notifications["dead"] = f.dead_letter(conn, outbox["meter_offline", "sms"])

    # Personal data: the owner-occupier lets us use their half hours (their token sees them); someone invited
    # who never moved in asked to be forgotten.
    data.consent = f.record_consent(conn, data.billing.customer)
    data.prospect = f.add_customer(conn, data.esco, "Pat Prospect", f"pat@{data.code.lower()}.example",
                                   "+44 7700 900123")
    data.erasure = f.erase_customer(conn, data.prospect, reference="DSR-1")
    # Its bank account and a statement: a transfer and a payout matched, charges dismissed, a gift queued.
    data.bank = build_bank(conn, data.esco, data.code, data.billing, data.money)
    # Reconciliation: the ESCO's settings (no grace: the cash payment's waiting top-up is an exception), an
    # earlier balance of the prepay meters (the shadow ledger's first day), a debt loaded on the twin-element
    # meter, a decision on an exception.
    conn.execute("INSERT INTO api.reconciliation_settings (esco, topup_grace, tolerance) VALUES (%s, '0', 0.02)",
                 (data.esco,))
    earlier = datetime.now(UTC) - timedelta(hours=8)
    f.record_states(conn, [{"meter_id": data.meters[0], "observed_at": earlier, "balance": "5.2"},
                           {"meter_id": data.meters[1], "observed_at": earlier, "balance": "53.0"}])
    conn.execute("INSERT INTO api.prepay_debts (meter_id, esco, amount, as_of, notes) VALUES (%s, %s, 12.5, now(), %s)",
                 (data.meters[0], data.esco, "from the previous supplier"))
    conn.execute("SELECT api.decide_reconciliation_exception(%s, %s, 'acknowledged', 'looking into it')",
                 (data.code, f"unexplained_deduction:{data.meters[0]}:2026-01-10"))
    return data


def _labelled(data) -> dict[str, str]:
    """The ids of a dataclass of ids (str, list or dict fields) by field name and position or key."""
    found = {}
    for spec in fields(data):
        value = getattr(data, spec.name)
        if isinstance(value, int):
            continue  # a number, not an id
        if isinstance(value, str):
            found[spec.name] = value
        elif isinstance(value, list):
            found.update({f"{spec.name}.{i}": v for i, v in enumerate(value)})
        else:
            found.update({f"{spec.name}.{k}": v for k, v in value.items()})
    return found
