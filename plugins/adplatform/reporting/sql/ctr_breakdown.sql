-- CTR by hour of day (UTC), device type and country over the range: one row per
-- (dimension, value), hours in order, devices and countries by impressions.
WITH scope AS (
    SELECT event_hour, device_type, country, impressions, clicks
    FROM adplatform.hourly_performance
    WHERE event_date BETWEEN {start:Date} AND {end:Date}
      AND campaign_id != ''
      AND ({campaign:String} = '' OR campaign_id = {campaign:String})
),
breakdown AS (
    SELECT 1 AS section, 'hour' AS dimension, lpad(CAST(event_hour AS VARCHAR), 2, '0') AS value,
           sum(impressions) AS impressions, sum(clicks) AS clicks
    FROM scope
    GROUP BY event_hour
    UNION ALL
    SELECT 2 AS section, 'device_type' AS dimension, device_type AS value,
           sum(impressions) AS impressions, sum(clicks) AS clicks
    FROM scope
    GROUP BY device_type
    UNION ALL
    SELECT 3 AS section, 'country' AS dimension, country AS value,
           sum(impressions) AS impressions, sum(clicks) AS clicks
    FROM scope
    GROUP BY country
)
SELECT
    dimension,
    value,
    impressions,
    clicks,
    clicks / nullif(impressions, 0) AS ctr
FROM breakdown
WHERE impressions > 0
ORDER BY section, CASE WHEN section = 1 THEN value ELSE '' END, impressions DESC, value
