-- Rollback of 0001_foundation. The roles are cluster-wide and may serve other
-- Flows databases on the same server, so they stay; everything else goes.
DROP SCHEMA api CASCADE;
DROP SCHEMA flows CASCADE;
ALTER DEFAULT PRIVILEGES FOR ROLE flows_owner GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
DROP EXTENSION btree_gist;
