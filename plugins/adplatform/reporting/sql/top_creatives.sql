-- Top creatives: the creatives with the most clicks over the range, with delivery and cost.
WITH totals AS (
    SELECT
        creative_id,
        campaign_id,
        sum(impressions) AS impressions,
        sum(clicks) AS clicks,
        sum(conversions) AS conversions,
        sum(spend_micros) AS spend_micros
    FROM adplatform.hourly_performance
    WHERE event_date BETWEEN {start:Date} AND {end:Date}
      AND creative_id != ''
      AND ({campaign:String} = '' OR campaign_id = {campaign:String})
    GROUP BY creative_id, campaign_id
)
SELECT
    t.creative_id AS creative_id,
    coalesce(cr.ad_size, '') AS ad_size,
    t.campaign_id AS campaign_id,
    coalesce(c.name, '') AS campaign,
    t.impressions AS impressions,
    t.clicks AS clicks,
    t.clicks / nullif(t.impressions, 0) AS ctr,
    t.conversions AS conversions,
    t.spend_micros / 1e6 AS spend_usd,
    t.spend_micros / 1e6 / nullif(t.clicks, 0) AS cpc_usd
FROM totals AS t
LEFT JOIN adplatform.dim_creatives AS cr ON cr.creative_id = t.creative_id
LEFT JOIN adplatform.dim_campaigns AS c ON c.campaign_id = t.campaign_id
ORDER BY clicks DESC, impressions DESC, creative_id
LIMIT {limit:UInt32}
