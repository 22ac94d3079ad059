-- Deploy flows:0002_topology_and_meters (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0002_topology_and_meters.sql
COMMIT;
