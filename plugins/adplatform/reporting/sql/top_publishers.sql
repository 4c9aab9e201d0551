-- Top publishers: where the spend went over the range, with supply and engagement.
-- fill_rate = impressions / bid requests; bid requests belong to no campaign, so with a
-- campaign filter the fill rate is empty.
WITH totals AS (
    SELECT
        publisher_id,
        sum(bid_requests) AS bid_requests,
        sum(impressions) AS impressions,
        sum(clicks) AS clicks,
        sum(spend_micros) AS spend_micros
    FROM adplatform.hourly_performance
    WHERE event_date BETWEEN {start:Date} AND {end:Date}
      AND publisher_id != ''
      AND ({campaign:String} = '' OR campaign_id = {campaign:String})
    GROUP BY publisher_id
)
SELECT
    t.publisher_id AS publisher_id,
    coalesce(p.name, '') AS publisher,
    t.bid_requests AS bid_requests,
    t.impressions AS impressions,
    t.impressions / nullif(t.bid_requests, 0) AS fill_rate,
    t.clicks AS clicks,
    t.clicks / nullif(t.impressions, 0) AS ctr,
    t.spend_micros / 1e6 AS spend_usd,
    t.spend_micros / 1e3 / nullif(t.impressions, 0) AS ecpm_usd
FROM totals AS t
LEFT JOIN adplatform.dim_publishers AS p ON p.publisher_id = t.publisher_id
ORDER BY spend_usd DESC, impressions DESC, publisher_id
LIMIT {limit:UInt32}
