-- Silver → Gold hourly performance, as adplatform.transform.gold.hourly_performance computes it:
-- bid requests, bids, wins and impressions in their own hour; attributed clicks and
-- conversions with their impression (its hour and dimensions); spend = the sum of each
-- impression's cost, its clearing CPM / 1000 rounded half up. The reference implementation of bench_transform.
WITH
    silver AS (
        SELECT *
        FROM file({silver:String}, Parquet)
        SETTINGS use_hive_partitioning = 1
    ),
    outcomes AS (
        SELECT
            impression_id,
            countIf(event_type = 'click') > 0 AS clicked,
            countIf(event_type = 'conversion') AS conversions,
            sumIf(conversion_value_micros, event_type = 'conversion') AS revenue_micros
        FROM silver
        WHERE event_type IN ('click', 'conversion') AND attribution = 'attributed'
        GROUP BY impression_id
    ),
    contributions AS (
        SELECT
            event_date, event_hour, advertiser_id, campaign_id, line_item_id, creative_id,
            publisher_id, country, device_type,
            toInt64(event_type = 'bid_request') AS n_bid_requests,
            toInt64(event_type = 'bid') AS n_bids,
            toInt64(event_type = 'win') AS n_wins,
            toInt64(0) AS n_impressions,
            toInt64(0) AS n_clicks,
            toInt64(0) AS n_conversions,
            toInt64(0) AS n_spend_micros,
            toInt64(0) AS n_revenue_micros
        FROM silver
        WHERE event_type IN ('bid_request', 'bid', 'win')
        UNION ALL
        SELECT
            i.event_date, i.event_hour, i.advertiser_id, i.campaign_id, i.line_item_id,
            i.creative_id, i.publisher_id, i.country, i.device_type,
            0, 0, 0, 1,
            toInt64(o.clicked),
            toInt64(o.conversions),
            intDiv(toInt64(i.clearing_price_cpm_micros) + 500, 1000),
            toInt64(o.revenue_micros)
        FROM silver AS i
        LEFT JOIN outcomes AS o ON i.impression_id = o.impression_id
        WHERE i.event_type = 'impression'
    )
SELECT
    event_date, event_hour, advertiser_id, campaign_id, line_item_id, creative_id,
    publisher_id, country, device_type,
    sum(n_bid_requests) AS bid_requests,
    sum(n_bids) AS bids,
    sum(n_wins) AS wins,
    sum(n_impressions) AS impressions,
    sum(n_clicks) AS clicks,
    sum(n_conversions) AS conversions,
    sum(n_spend_micros) AS spend_micros,
    sum(n_revenue_micros) AS revenue_micros,
    if(impressions > 0, clicks / impressions, NULL) AS ctr,
    if(clicks > 0, conversions / clicks, NULL) AS cvr,
    if(impressions > 0, spend_micros * 1000 / impressions, NULL) AS ecpm_micros,
    if(bids > 0, wins / bids, NULL) AS win_rate,
    if(bid_requests > 0, impressions / bid_requests, NULL) AS fill_rate
FROM contributions
GROUP BY
    event_date, event_hour, advertiser_id, campaign_id, line_item_id, creative_id,
    publisher_id, country, device_type
