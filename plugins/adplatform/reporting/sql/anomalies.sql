-- Anomaly flags: campaign-days whose spend or CTR is far from the campaign's own trailing
-- baseline, the 7 days before. z = (value - baseline mean) / baseline standard deviation; a
-- value is flagged when |z| >= threshold and it is at least 25 % away from the baseline mean
-- (a very steady baseline must not flag a small move), with at least 3 baseline days (and, for
-- CTR, at least 100 impressions that day, so a handful of impressions cannot raise a flag). A
-- campaign counts as spending 0 on a day that has traffic but none of its own.
WITH days AS (
    SELECT event_date
    FROM adplatform.hourly_performance
    WHERE event_date BETWEEN {start:Date} - 7 AND {end:Date}
    GROUP BY event_date
),
daily AS (
    SELECT
        event_date,
        campaign_id,
        sum(impressions) AS impressions,
        sum(clicks) AS clicks,
        sum(spend_micros) AS spend_micros
    FROM adplatform.hourly_performance
    WHERE event_date BETWEEN {start:Date} - 7 AND {end:Date}
      AND campaign_id != ''
      AND ({campaign:String} = '' OR campaign_id = {campaign:String})
    GROUP BY event_date, campaign_id
),
grid AS (
    SELECT
        days.event_date AS event_date,
        campaigns.campaign_id AS campaign_id,
        coalesce(d.impressions, 0) AS impressions,
        coalesce(d.spend_micros, 0) / 1e6 AS spend_usd,
        d.clicks / nullif(d.impressions, 0) AS ctr
    FROM days
    CROSS JOIN (SELECT DISTINCT campaign_id FROM daily) AS campaigns
    LEFT JOIN daily AS d
        ON d.event_date = days.event_date AND d.campaign_id = campaigns.campaign_id
),
baseline AS (
    SELECT
        *,
        count(*) OVER w AS baseline_days,
        avg(spend_usd) OVER w AS spend_mean,
        stddev_pop(spend_usd) OVER w AS spend_sd,
        count(ctr) OVER w AS ctr_days,
        avg(ctr) OVER w AS ctr_mean,
        stddev_pop(ctr) OVER w AS ctr_sd
    FROM grid
    WINDOW w AS (PARTITION BY campaign_id ORDER BY event_date ROWS BETWEEN 7 PRECEDING AND 1 PRECEDING)
),
scored AS (
    SELECT
        *,
        CASE WHEN baseline_days >= 3 AND spend_sd > 0
             THEN (spend_usd - spend_mean) / spend_sd END AS spend_z,
        abs(spend_usd - spend_mean) >= 0.25 * spend_mean AS spend_moved,
        CASE WHEN ctr_days >= 3 AND ctr_sd > 0 AND impressions >= 100
             THEN (ctr - ctr_mean) / ctr_sd END AS ctr_z,
        abs(ctr - ctr_mean) >= 0.25 * ctr_mean AS ctr_moved
    FROM baseline
    WHERE event_date BETWEEN {start:Date} AND {end:Date}
)
SELECT
    s.event_date AS event_date,
    s.campaign_id AS campaign_id,
    coalesce(c.name, '') AS campaign,
    CASE WHEN NOT s.spend_moved THEN ''
         WHEN s.spend_z >= {threshold:Float64} THEN 'high'
         WHEN s.spend_z <= -{threshold:Float64} THEN 'low' ELSE '' END AS spend_flag,
    s.spend_usd AS spend_usd,
    s.spend_mean AS spend_baseline_usd,
    s.spend_z AS spend_z,
    CASE WHEN NOT s.ctr_moved THEN ''
         WHEN s.ctr_z >= {threshold:Float64} THEN 'high'
         WHEN s.ctr_z <= -{threshold:Float64} THEN 'low' ELSE '' END AS ctr_flag,
    s.ctr AS ctr,
    s.ctr_mean AS ctr_baseline,
    s.ctr_z AS ctr_z
FROM scored AS s
LEFT JOIN adplatform.dim_campaigns AS c ON c.campaign_id = s.campaign_id
WHERE (s.spend_moved AND abs(s.spend_z) >= {threshold:Float64})
   OR (s.ctr_moved AND abs(s.ctr_z) >= {threshold:Float64})
ORDER BY greatest(abs(coalesce(s.spend_z, 0)), abs(coalesce(s.ctr_z, 0))) DESC, event_date, campaign_id
