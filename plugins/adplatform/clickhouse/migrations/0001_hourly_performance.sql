-- The hourly fact table: Gold's hourly_performance, one row per (hour, advertiser, campaign,
-- line item, creative, publisher, country, device type).
--
-- Plain MergeTree, partitioned by day: the publish rebuilds a whole day in a staging table and
-- swaps it in with ALTER TABLE ... REPLACE PARTITION, which is atomic and idempotent, so a retry
-- or a backfill replaces rows instead of adding them and every report reads exact sums without
-- FINAL. (A ReplacingMergeTree would only deduplicate eventually, at merge time.)
--
-- Gold's row-level ratios (ctr, cvr, ...) are not stored: a ratio of sums is re-derived from the
-- counts at whatever grain a report needs; averaging row ratios would be wrong.
--
-- The daily rollups are projections, not materialized views: a projection lives inside each
-- data part, so REPLACE PARTITION carries it along with the rows (a materialized view only sees
-- INSERTs and would drift from, or double count, a replaced partition). Queries pick the
-- smallest matching projection automatically.
CREATE TABLE IF NOT EXISTS adplatform.hourly_performance
(
    event_date     Date,
    event_hour     UInt8,
    advertiser_id  LowCardinality(String),
    campaign_id    LowCardinality(String),   -- '' for rows before a bid (bid requests)
    line_item_id   LowCardinality(String),
    creative_id    LowCardinality(String),
    publisher_id   LowCardinality(String),
    country        LowCardinality(String),
    device_type    LowCardinality(String),
    bid_requests   Int64,
    bids           Int64,
    wins           Int64,
    impressions    Int64,
    clicks         Int64,
    conversions    Int64,
    spend_micros   Int64,                    -- USD micros
    revenue_micros Int64,                    -- USD micros

    -- campaign performance, pacing and anomaly flags
    PROJECTION daily_campaign
    (
        SELECT event_date, advertiser_id, campaign_id,
               sum(bid_requests), sum(bids), sum(wins), sum(impressions), sum(clicks),
               sum(conversions), sum(spend_micros), sum(revenue_micros)
        GROUP BY event_date, advertiser_id, campaign_id
    ),
    -- top creatives and top publishers
    PROJECTION daily_creative_publisher
    (
        SELECT event_date, campaign_id, creative_id, publisher_id,
               sum(bid_requests), sum(bids), sum(wins), sum(impressions), sum(clicks),
               sum(conversions), sum(spend_micros), sum(revenue_micros)
        GROUP BY event_date, campaign_id, creative_id, publisher_id
    ),
    -- CTR by hour, device and country
    PROJECTION daily_audience
    (
        SELECT event_date, event_hour, campaign_id, device_type, country,
               sum(impressions), sum(clicks)
        GROUP BY event_date, event_hour, campaign_id, device_type, country
    )
)
ENGINE = MergeTree
PARTITION BY event_date
ORDER BY (event_date, campaign_id, creative_id, publisher_id, event_hour, country, device_type)
-- Retention: 400 days keeps a year-over-year comparison for every day; expired days leave as
-- whole partitions.
TTL event_date + INTERVAL 400 DAY
SETTINGS ttl_only_drop_parts = 1;
