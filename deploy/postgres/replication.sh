#!/bin/sh
# docker-entrypoint-initdb.d script of the primary (docker-compose.yml's db):
# a login for streaming replication and the pg_hba line that lets replicas use it.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v password="$FLOWS_REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
