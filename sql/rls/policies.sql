-- Row-level security: which rows each role sees and may write.
-- admin and service: every ESCO. operator and analyst: the ESCO of the JWT
-- "esco" claim. (select ...) makes PostgreSQL evaluate the helper once per
-- statement instead of once per row.

ALTER TABLE flows.escos ENABLE ROW LEVEL SECURITY;

CREATE POLICY escos_all ON flows.escos
    TO flows_admin, flows_service
    USING (true);
CREATE POLICY escos_own ON flows.escos
    FOR SELECT TO flows_operator, flows_analyst, flows_customer
    USING (code = (SELECT flows.jwt_claims() ->> 'esco'));


ALTER TABLE flows.meter_registry ENABLE ROW LEVEL SECURITY;

CREATE POLICY meter_registry_all ON flows.meter_registry
    TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_registry_own_esco ON flows.meter_registry
    TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
