-- Revert flows:0002_topology_and_meters (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0002_topology_and_meters.rollback.sql
COMMIT;
