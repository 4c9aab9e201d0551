"""Each report against the hand-checked market of conftest.py; expected numbers worked out by
hand from its table (money in USD)."""

from __future__ import annotations

import math

import pytest

from adplatform.clickhouse.publish import publish_dimensions, publish_facts
from adplatform.reporting.reports import REPORTS, ReportRequest, parse_request, run_report

from .conftest import BASELINE_DAYS, D0


@pytest.fixture
def published(client, lake):
    publish_dimensions(client, lake)
    publish_facts(client, lake)
    return client


def rows(client, name, **request):
    frame = run_report(client, REPORTS[name], parse_request(**request))
    return frame.to_dict("records")


def approx(record):
    return {
        k: pytest.approx(v, nan_ok=True) if isinstance(v, float) else v for k, v in record.items()
    }


def test_daily_campaign_performance(published):
    got = rows(published, "campaign_performance", start=D0, end=D0)

    assert [approx(r) for r in got] == [
        # ordered by spend; ctr = clicks/impr., cvr = conv./clicks, ecpm = 1000 spend/impr.
        {"event_date": D0, "advertiser": "Globex", "campaign_id": "cmp-c",
         "campaign": "Globex Launch", "impressions": 2000, "clicks": 40, "conversions": 4,
         "spend_usd": 250.0, "revenue_usd": 500.0, "ctr": 0.02, "cvr": 0.1, "ecpm_usd": 125.0,
         "cpc_usd": 6.25, "roas": 2.0},
        {"event_date": D0, "advertiser": "Acme", "campaign_id": "cmp-a",
         "campaign": "Acme Spring", "impressions": 1000, "clicks": 25, "conversions": 4,
         "spend_usd": 100.0, "revenue_usd": 120.0, "ctr": 0.025, "cvr": 0.16, "ecpm_usd": 100.0,
         "cpc_usd": 4.0, "roas": 1.2},
        {"event_date": D0, "advertiser": "Acme", "campaign_id": "cmp-b",
         "campaign": "Acme Promo", "impressions": 500, "clicks": 1, "conversions": 0,
         "spend_usd": 20.0, "revenue_usd": 0.0, "ctr": 0.002, "cvr": 0.0, "ecpm_usd": 40.0,
         "cpc_usd": 20.0, "roas": 0.0},
    ]  # fmt: skip


def test_campaign_filter_and_multi_day_range(published):
    got = rows(published, "campaign_performance", start=BASELINE_DAYS[0], end=D0, campaign="cmp-a")

    assert [(r["event_date"], r["spend_usd"], r["clicks"]) for r in got] == [
        (BASELINE_DAYS[0], 40.0, 20),
        (BASELINE_DAYS[1], 60.0, 30),
        (BASELINE_DAYS[2], 40.0, 20),
        (BASELINE_DAYS[3], 60.0, 30),
        (D0, 100.0, 25),
    ]


def test_pacing_against_budget_lists_every_campaign(published):
    got = rows(published, "pacing", start=D0, end=D0)

    assert [
        (r["campaign_id"], r["budget_usd"], r["spend_usd"], pytest.approx(r["pacing"]), r["status"])
        for r in got
    ] == [
        ("cmp-c", 200.0, 250.0, 1.25, "over_budget"),  # 250 / 200
        ("cmp-a", 100.0, 100.0, 1.0, "on_pace"),  # exactly the budget is not over it
        ("cmp-b", 50.0, 20.0, 0.4, "under_pacing"),
        ("cmp-d", 30.0, 0.0, 0.0, "under_pacing"),  # no delivery at all, still listed
    ]


def test_top_creatives_by_clicks(published):
    got = rows(published, "top_creatives", start=D0, end=D0, limit=3)

    assert [
        (r["creative_id"], r["ad_size"], r["clicks"], pytest.approx(r["ctr"]), r["cpc_usd"])
        for r in got
    ] == [
        ("cr-c1", "300x250", 40, 0.02, 6.25),  # 250 USD / 40 clicks
        ("cr-a1", "300x250", 15, 0.025, 4.0),  # 60 / 15
        ("cr-a2", "728x90", 10, 0.025, 4.0),  # 40 / 10
    ]


def test_top_publishers_by_spend(published):
    got = rows(published, "top_publishers", start=D0, end=D0)

    assert [approx(r) for r in got] == [
        # pub-2: rows 2 and 4; pub-1: rows 1 and 3; fill rate = impressions / bid requests.
        {"publisher_id": "pub-2", "publisher": "Game Hub", "bid_requests": 4000,
         "impressions": 2400, "fill_rate": 0.6, "clicks": 50, "ctr": 50 / 2400,
         "spend_usd": 290.0, "ecpm_usd": 290 / 2400 * 1000},
        {"publisher_id": "pub-1", "publisher": "News Daily", "bid_requests": 6000,
         "impressions": 1100, "fill_rate": 1100 / 6000, "clicks": 16, "ctr": 16 / 1100,
         "spend_usd": 80.0, "ecpm_usd": 80 / 1100 * 1000},
    ]  # fmt: skip


def test_ctr_by_hour_device_and_country(published):
    got = rows(published, "ctr_breakdown", start=D0, end=D0)

    assert [(r["dimension"], r["value"], r["impressions"], r["clicks"]) for r in got] == [
        ("hour", "09", 1100, 16),  # rows 1 and 3
        ("hour", "21", 2400, 50),  # rows 2 and 4
        ("device_type", "desktop", 2400, 50),
        ("device_type", "mobile", 1100, 16),
        ("country", "US", 3100, 56),  # rows 1, 3 and 4
        ("country", "DE", 400, 10),
    ]
    assert [r["ctr"] for r in got] == pytest.approx(
        [16 / 1100, 50 / 2400, 50 / 2400, 16 / 1100, 56 / 3100, 10 / 400]
    )


def test_anomaly_flags_against_the_trailing_baseline(published):
    got = rows(published, "anomalies", start=D0, end=D0)

    # cmp-a spend: baseline 40, 60, 40, 60 → mean 50, sd 10; D0 100 → z = +5.
    # cmp-b CTR: baseline .008, .012, .008, .012 → mean .01, sd .002; D0 1/500 → z = -4.
    # cmp-b spend is a flat 20 (sd 0) and cmp-c has no baseline: neither can be flagged.
    assert [approx(r) for r in got] == [
        {"event_date": D0, "campaign_id": "cmp-a", "campaign": "Acme Spring",
         "spend_flag": "high", "spend_usd": 100.0, "spend_baseline_usd": 50.0, "spend_z": 5.0,
         "ctr_flag": "", "ctr": 0.025, "ctr_baseline": 0.025, "ctr_z": 0.0},
        {"event_date": D0, "campaign_id": "cmp-b", "campaign": "Acme Promo",
         "spend_flag": "", "spend_usd": 20.0, "spend_baseline_usd": 20.0, "spend_z": math.nan,
         "ctr_flag": "low", "ctr": 0.002, "ctr_baseline": 0.01, "ctr_z": -4.0},
    ]  # fmt: skip
    assert rows(published, "anomalies", start=D0, end=D0, threshold="4.5")[0]["campaign_id"] == (
        "cmp-a"
    )
    assert len(rows(published, "anomalies", start=D0, end=D0, threshold="6")) == 0


def test_a_range_without_data_gives_empty_reports(published):
    before = BASELINE_DAYS[0].replace(year=BASELINE_DAYS[0].year - 1)
    for report in REPORTS.values():
        assert len(run_report(published, report, parse_request(before, before))) == 0


def test_parameters_are_bound_not_formatted(published):
    """Even a request that skipped validation cannot inject: the value is a bound literal."""
    hostile = ReportRequest(D0, D0, campaign="x' OR '1'='1")
    assert len(run_report(published, REPORTS["campaign_performance"], hostile)) == 0
    assert published.query("SELECT count() FROM adplatform.hourly_performance").result_rows == [
        (18,)
    ]
