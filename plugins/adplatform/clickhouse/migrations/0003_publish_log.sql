-- One row per published Gold day: the fingerprint of the Gold files it was built from (so an
-- unchanged day is not reloaded and a rewritten one is) and the totals it was verified against.
CREATE TABLE IF NOT EXISTS adplatform.publish_log
(
    event_date       Date,
    gold_fingerprint String,
    gold_files       UInt32,
    rows             UInt64,
    impressions      Int64,
    clicks           Int64,
    spend_micros     Int64,
    published_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(published_at)
ORDER BY event_date;
