"""A synthetic Gold ``hourly_performance`` for the ad catalogue, generated fast (numpy).

For the reporting benchmark (tens of millions of rows in seconds) and the report UI test: the
rows have Gold's exact schema and grain (each (hour, creative, publisher, country, device) at
most once), publishers and countries skewed as in the traffic generator, a diurnal curve, spend
paced around each campaign's daily budget, and on the last day two planted anomalies (one
campaign overspends threefold, another's CTR collapses) so every report has something to show.
It is not the traffic simulation: Spark's Gold from real events is the source of truth.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import numpy as np
import pyarrow as pa

from adplatform.events.catalog import COUNTRIES, DEVICES, Catalog
from adplatform.lakehouse.io import atomic_write_parquet
from adplatform.lakehouse.tables import GOLD_HOURLY_PERFORMANCE
from adplatform.settings import Settings

BID_REQUESTS_PER_HOUR = 2_000_000


def sample_gold(
    catalog: Catalog, start: date, days: int, rows_per_hour: int, seed: int = 7
) -> Iterator[tuple[date, int, pa.Table]]:
    """Yield (day, hour, Gold rows) for ``days`` days from ``start``."""
    rng = np.random.default_rng(seed)
    countries, devices = list(COUNTRIES), list(DEVICES)
    country_share = np.array([COUNTRIES[c][0] for c in countries])
    device_share = np.array([DEVICES[d][0] for d in devices])
    publisher_weight = np.array([p.weight for p in catalog.publishers])
    creatives = catalog.creatives
    campaign_index = {c.campaign_id: i for i, c in enumerate(catalog.campaigns)}
    creative_campaign = np.array([campaign_index[c.campaign_id] for c in creatives])

    # Every (creative, publisher, country, device) key, with its share of the delivery.
    shape = (len(creatives), len(publisher_weight), len(countries), len(devices))
    key_weight = np.einsum(
        "a,b,c,d->abcd",
        rng.lognormal(0, 0.5, len(creatives)),
        publisher_weight / publisher_weight.sum(),
        country_share / country_share.sum(),
        device_share / device_share.sum(),
    ).ravel()
    key_weight /= key_weight.sum()
    log_weight = np.log(key_weight)
    supply = len(publisher_weight) * len(countries) * len(devices)
    delivery_rows = max(rows_per_hour - supply, 1)
    if delivery_rows > key_weight.size:
        raise ValueError(f"rows_per_hour must be at most {key_weight.size + supply}")

    # Budget pacing: each campaign aims at pace x its budget a day, at its own CPM.
    campaigns = catalog.campaigns
    budget_usd = np.array([c.daily_budget_micros / 1e6 for c in campaigns])
    pace = rng.uniform(0.5, 1.08, len(campaigns))
    cpm_usd = rng.uniform(1.5, 6.0, len(campaigns))
    cvr = np.array([c.conversion_rate for c in campaigns])
    order_value_usd = rng.uniform(20, 80, len(campaigns))
    campaign_share = np.bincount(
        creative_campaign, weights=key_weight.reshape(len(creatives), -1).sum(axis=1)
    )
    impressions_per_row = (
        budget_usd * pace * 1000 / cpm_usd / np.maximum(campaign_share * delivery_rows * 24, 1)
    )
    # Click-through from the catalogue's hidden click model (its logit effects), as simulated.
    truth = catalog.truth
    creative_logit = np.array([truth.creative[c.creative_id] for c in creatives])
    publisher_logit = np.array([truth.publisher[p.publisher_id] for p in catalog.publishers])
    country_logit = np.array([truth.country[c] for c in countries])
    device_logit = np.array([truth.device[d] for d in devices])
    overspender, ctr_collapse = rng.choice(len(campaigns), 2, replace=False)

    for offset in range(days):
        day = start + timedelta(days=offset)
        last_day = offset == days - 1
        # Day-to-day wobble per campaign, so that a trailing baseline has a realistic spread.
        daily_volume = rng.lognormal(0, 0.08, len(campaigns))
        daily_ctr = rng.lognormal(0, 0.05, len(campaigns))
        for hour in range(24):
            diurnal = 1 + 0.45 * np.sin((hour - 8) / 24 * 2 * np.pi)
            # Gumbel top-k: distinct keys drawn in proportion to their weight, vectorised.
            scores = log_weight - np.log(-np.log(rng.random(key_weight.size)))
            keys = np.argpartition(scores, -delivery_rows)[-delivery_rows:]
            cr, pub, country, device = np.unravel_index(np.sort(keys), shape)
            camp = creative_campaign[cr]
            spend_factor = np.where(last_day & (camp == overspender), 3.0, 1.0)
            volume = impressions_per_row[camp] * daily_volume[camp] * diurnal * spend_factor
            impressions = rng.poisson(volume) + 1
            logit = (
                truth.intercept
                + truth.hour[hour]
                + creative_logit[cr]
                + publisher_logit[pub]
                + country_logit[country]
                + device_logit[device]
            )
            ctr = daily_ctr[camp] / (1 + np.exp(-logit))
            ctr = np.where(last_day & (camp == ctr_collapse), ctr * 0.2, ctr)
            clicks = rng.binomial(impressions, np.clip(ctr, 0, 1))
            conversions = rng.binomial(clicks, cvr[camp])
            wins = impressions + rng.poisson(0.02 * impressions)
            bids = wins + rng.poisson(1.5 * wins)
            spend = np.round(impressions * cpm_usd[camp] * 1000 * rng.uniform(0.8, 1.2, camp.size))
            revenue = np.round(conversions * order_value_usd[camp] * 1e6)

            s_pub, s_country, s_device = np.unravel_index(
                np.arange(supply), (len(publisher_weight), len(countries), len(devices))
            )
            supply_weight = (
                publisher_weight[s_pub] * country_share[s_country] * device_share[s_device]
            )
            requests = rng.poisson(
                BID_REQUESTS_PER_HOUR * diurnal * supply_weight / supply_weight.sum()
            )
            zeros = np.zeros(supply, np.int64)
            none = np.full(supply, -1)  # supply rows have no campaign, line item or creative
            camp_or_none, cr_or_none = np.concatenate([camp, none]), np.concatenate([cr, none])
            labels = {
                "advertiser_id": _labels([c.advertiser_id for c in campaigns], camp_or_none),
                "campaign_id": _labels([c.campaign_id for c in campaigns], camp_or_none),
                "line_item_id": _labels([c.line_item_id for c in creatives], cr_or_none),
                "creative_id": _labels([c.creative_id for c in creatives], cr_or_none),
                "publisher_id": _labels(
                    [p.publisher_id for p in catalog.publishers], np.concatenate([pub, s_pub])
                ),
                "country": _labels(countries, np.concatenate([country, s_country])),
                "device_type": _labels(devices, np.concatenate([device, s_device])),
            }
            counts = {
                "bid_requests": np.concatenate([np.zeros(camp.size, np.int64), requests]),
                "bids": np.concatenate([bids, zeros]),
                "wins": np.concatenate([wins, zeros]),
                "impressions": np.concatenate([impressions, zeros]),
                "clicks": np.concatenate([clicks, zeros]),
                "conversions": np.concatenate([conversions, zeros]),
                "spend_micros": np.concatenate([spend, zeros]).astype(np.int64),
                "revenue_micros": np.concatenate([revenue, zeros]).astype(np.int64),
            }
            yield day, hour, _table(labels, counts)


def _labels(values: list[str], index: np.ndarray) -> pa.Array:
    """Strings by index into ``values``; -1 is Gold's "not applicable", the empty string."""
    dictionary = pa.array([*values, ""])
    codes = np.where(index < 0, len(values), index).astype(np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(codes), dictionary).dictionary_decode()


def _table(labels: dict[str, pa.Array], counts: dict[str, np.ndarray]) -> pa.Table:
    def ratio(numerator: str, denominator: str, scale: float = 1.0) -> pa.Array:
        with np.errstate(divide="ignore", invalid="ignore"):
            values = counts[numerator] * scale / counts[denominator]
        return pa.array(values, mask=counts[denominator] == 0)

    return pa.Table.from_pydict(
        {
            **labels,
            **counts,
            "ctr": ratio("clicks", "impressions"),
            "cvr": ratio("conversions", "clicks"),
            "ecpm_micros": ratio("spend_micros", "impressions", 1000),
            "win_rate": ratio("wins", "bids"),
            "fill_rate": ratio("impressions", "bid_requests"),
        },
        schema=GOLD_HOURLY_PERFORMANCE.schema,
    )


def write_sample_gold(
    settings: Settings, catalog: Catalog, start: date, days: int, rows_per_hour: int, seed: int = 7
) -> int:
    """Write the sample into the lake in Gold's layout; returns the rows written."""
    written = 0
    for day, hour, table in sample_gold(catalog, start, days, rows_per_hour, seed):
        directory = GOLD_HOURLY_PERFORMANCE.path(settings) / f"event_date={day}/event_hour={hour}"
        atomic_write_parquet(table, directory / "part-00000.parquet")
        written += table.num_rows
    return written
