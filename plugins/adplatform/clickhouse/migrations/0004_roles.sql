-- requires: access_management
-- Roles for a ClickHouse server; users (with their passwords) are created by operators and
-- given a role, e.g. CREATE USER grafana IDENTIFIED BY '...' DEFAULT ROLE adplatform_reader.
-- chDB has no writable access storage, so the runner records this migration as skipped there.

-- Analysts, Grafana and the report DAG: read only, with a time limit per query.
CREATE ROLE IF NOT EXISTS adplatform_reader;
GRANT SELECT ON adplatform.* TO adplatform_reader;
CREATE SETTINGS PROFILE IF NOT EXISTS adplatform_reader
    SETTINGS readonly = 2, max_execution_time = 120 TO adplatform_reader;

-- The publish: staging tables (CREATE/DROP/TRUNCATE), INSERT, and REPLACE PARTITION (which
-- needs SELECT on the staging table and INSERT plus ALTER DELETE on the fact table).
CREATE ROLE IF NOT EXISTS adplatform_loader;
GRANT SELECT, INSERT, ALTER DELETE, CREATE TABLE, DROP TABLE, TRUNCATE
    ON adplatform.* TO adplatform_loader;
