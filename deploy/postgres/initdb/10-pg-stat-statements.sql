-- Run once by the postgres image on an empty data directory, in POSTGRES_DB as POSTGRES_USER:
-- the statistics the dashboard's "Top statements by total time" reads (postgres_exporter's
-- deploy/postgres-exporter/queries.yaml). The server loads the library at start (compose.yaml).
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
