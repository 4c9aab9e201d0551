-- Pacing against budget: each campaign's spend per day against its daily budget.
-- pacing = spend / budget; status over_budget above 100 %, under_pacing below 80 %, else on_pace.
-- Every campaign of the catalogue appears on every day that has traffic, so a campaign that
-- stopped spending shows as under-pacing instead of vanishing from the report.
WITH days AS (
    SELECT event_date
    FROM adplatform.hourly_performance
    WHERE event_date BETWEEN {start:Date} AND {end:Date}
    GROUP BY event_date
),
spend AS (
    SELECT event_date, campaign_id, sum(spend_micros) AS spend_micros
    FROM adplatform.hourly_performance
    WHERE event_date BETWEEN {start:Date} AND {end:Date}
      AND campaign_id != ''
      AND ({campaign:String} = '' OR campaign_id = {campaign:String})
    GROUP BY event_date, campaign_id
),
paced AS (
    SELECT
        days.event_date AS event_date,
        c.advertiser_id AS advertiser_id,
        c.campaign_id AS campaign_id,
        c.name AS campaign,
        c.daily_budget_micros AS budget_micros,
        coalesce(s.spend_micros, 0) AS spend_micros
    FROM days
    CROSS JOIN adplatform.dim_campaigns AS c
    LEFT JOIN spend AS s ON s.event_date = days.event_date AND s.campaign_id = c.campaign_id
    WHERE {campaign:String} = '' OR c.campaign_id = {campaign:String}
)
SELECT
    p.event_date AS event_date,
    coalesce(a.name, '') AS advertiser,
    p.campaign_id AS campaign_id,
    p.campaign AS campaign,
    p.budget_micros / 1e6 AS budget_usd,
    p.spend_micros / 1e6 AS spend_usd,
    p.spend_micros / nullif(p.budget_micros, 0) AS pacing,
    CASE
        WHEN p.spend_micros > p.budget_micros THEN 'over_budget'
        WHEN p.spend_micros < 0.8 * p.budget_micros THEN 'under_pacing'
        ELSE 'on_pace'
    END AS status
FROM paced AS p
LEFT JOIN adplatform.dim_advertisers AS a ON a.advertiser_id = p.advertiser_id
ORDER BY event_date, pacing DESC, campaign_id
