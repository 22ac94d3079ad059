-- Verify flows:0018_realtime_visibility
BEGIN;
DO $$
DECLARE
    slow text[];
BEGIN
    SELECT array_agg(p.tablename || '.' || p.policyname) INTO slow
    FROM pg_catalog.pg_policies AS p
    WHERE p.policyname IN ('properties_customer', 'properties_service_head_customer', 'service_head_meter_customer',
                           'meter_registry_customer', 'meter_shadows_customer')
      AND p.qual NOT LIKE '%= ANY%';
    ASSERT slow IS NULL, pg_catalog.format('customer policies still hash whole tables: %s', slow);
    ASSERT (SELECT count(*) FROM pg_catalog.pg_policies AS p
            WHERE p.policyname IN ('properties_customer', 'properties_service_head_customer',
                                   'service_head_meter_customer', 'meter_registry_customer',
                                   'meter_shadows_customer')) = 5, 'a customer policy of the meter chain is missing';
    ASSERT (SELECT l.lanname FROM pg_catalog.pg_proc AS f JOIN pg_catalog.pg_language AS l ON l.oid = f.prolang
            WHERE f.oid = 'flows.customer_property_ids()'::regprocedure) = 'plpgsql',
        'flows.customer_property_ids is not PL/pgSQL';
END
$$;
ROLLBACK;
