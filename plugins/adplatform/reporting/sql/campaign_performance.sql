-- Daily campaign performance: delivery, engagement and money per campaign and day, each ratio
-- re-derived from the day's sums. Money in USD.
WITH daily AS (
    SELECT
        event_date,
        campaign_id,
        sum(impressions) AS impressions,
        sum(clicks) AS clicks,
        sum(conversions) AS conversions,
        sum(spend_micros) AS spend_micros,
        sum(revenue_micros) AS revenue_micros
    FROM adplatform.hourly_performance
    WHERE event_date BETWEEN {start:Date} AND {end:Date}
      AND campaign_id != ''
      AND ({campaign:String} = '' OR campaign_id = {campaign:String})
    GROUP BY event_date, campaign_id
)
SELECT
    d.event_date AS event_date,
    coalesce(a.name, '') AS advertiser,
    d.campaign_id AS campaign_id,
    coalesce(c.name, '') AS campaign,
    d.impressions AS impressions,
    d.clicks AS clicks,
    d.conversions AS conversions,
    d.spend_micros / 1e6 AS spend_usd,
    d.revenue_micros / 1e6 AS revenue_usd,
    d.clicks / nullif(d.impressions, 0) AS ctr,
    d.conversions / nullif(d.clicks, 0) AS cvr,
    d.spend_micros / 1e3 / nullif(d.impressions, 0) AS ecpm_usd,
    d.spend_micros / 1e6 / nullif(d.clicks, 0) AS cpc_usd,
    d.revenue_micros / nullif(d.spend_micros, 0) AS roas
FROM daily AS d
LEFT JOIN adplatform.dim_campaigns AS c ON c.campaign_id = d.campaign_id
LEFT JOIN adplatform.dim_advertisers AS a ON a.advertiser_id = c.advertiser_id
ORDER BY event_date, spend_usd DESC, campaign_id
