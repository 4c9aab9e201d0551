-- Run before every migration (idempotent): the database and the record of applied migrations.
-- ReplacingMergeTree keyed by version: a migration recorded as skipped and later applied keeps
-- one row; readers take the latest row per version with argMax, so no FINAL is needed.
CREATE DATABASE IF NOT EXISTS adplatform;

CREATE TABLE IF NOT EXISTS adplatform.schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,                     -- sha256 of the file: applied migrations are immutable
    status     Enum8('applied' = 1, 'skipped' = 2),
    note       String,                     -- why a migration was skipped
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version;
