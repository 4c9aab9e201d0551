-- Dimension tables: the reference data from the lake (<data_root>/lake/reference/*.parquet),
-- replaced whole on each publish (REPLACE PARTITION tuple() from a staging copy). Columns as in
-- adplatform.lakehouse.tables.REFERENCE_TABLES.
CREATE TABLE IF NOT EXISTS adplatform.dim_advertisers
(
    advertiser_id String,
    name          String,
    vertical      LowCardinality(String),
    currency      LowCardinality(String)
)
ENGINE = MergeTree
ORDER BY advertiser_id;

CREATE TABLE IF NOT EXISTS adplatform.dim_campaigns
(
    campaign_id         String,
    advertiser_id       String,
    name                String,
    daily_budget_micros Int64                -- USD micros, for pacing
)
ENGINE = MergeTree
ORDER BY campaign_id;

CREATE TABLE IF NOT EXISTS adplatform.dim_line_items
(
    line_item_id String,
    campaign_id  String,
    base_bid_cpm Float64                     -- in the advertiser's currency
)
ENGINE = MergeTree
ORDER BY line_item_id;

CREATE TABLE IF NOT EXISTS adplatform.dim_creatives
(
    creative_id  String,
    campaign_id  String,
    line_item_id String,
    ad_size      LowCardinality(String)
)
ENGINE = MergeTree
ORDER BY creative_id;

CREATE TABLE IF NOT EXISTS adplatform.dim_publishers
(
    publisher_id  String,
    name          String,
    floor_cpm_usd Float64,
    site_count    Int32
)
ENGINE = MergeTree
ORDER BY publisher_id;
