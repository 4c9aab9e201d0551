"""The synthetic ad market: advertisers, campaigns, line items, creatives, publishers, users.

Built deterministically from a seed. It is also the reference data (dimension tables) the
lakehouse and ClickHouse reports join to, and it holds the hidden ground-truth click model
whose true probabilities let later stages measure how close a CTR model gets to the best
possible one.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from adplatform.events.currency import USD_PER_UNIT

COUNTRIES: dict[str, tuple[float, tuple[str, ...]]] = {
    # country: (traffic share, regions)
    "US": (0.34, ("CA", "NY", "TX", "FL", "WA")),
    "IN": (0.10, ("MH", "KA", "DL")),
    "GB": (0.08, ("ENG", "SCT")),
    "DE": (0.08, ("BE", "BY", "NW")),
    "BR": (0.07, ("SP", "RJ")),
    "FR": (0.06, ("IDF", "ARA")),
    "JP": (0.06, ("13", "27")),
    "CA": (0.05, ("ON", "QC", "BC")),
    "AU": (0.04, ("NSW", "VIC")),
    "ES": (0.04, ("MD", "CT")),
    "IT": (0.04, ("LAZ", "LOM")),
    "MX": (0.04, ("CMX", "JAL")),
}
DEVICES: dict[str, tuple[float, tuple[str, ...]]] = {
    "mobile": (0.55, ("ios", "android")),
    "desktop": (0.30, ("windows", "macos", "linux")),
    "tablet": (0.10, ("ios", "android")),
    "ctv": (0.05, ("tvos", "androidtv", "tizen")),
}
AD_SIZES_BY_DEVICE: dict[str, tuple[str, ...]] = {
    "mobile": ("320x50", "300x250", "320x480"),
    "desktop": ("728x90", "300x250", "160x600", "970x250", "300x600"),
    "tablet": ("728x90", "300x250", "768x1024"),
    "ctv": ("1920x1080",),
}
ALL_AD_SIZES = tuple(sorted({s for sizes in AD_SIZES_BY_DEVICE.values() for s in sizes}))
_BRANDS = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark",
    "Wayne",
    "Wonka",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Vandelay",
    "Duff",
    "Oceanic",
    "Pied Piper",
    "Massive Dynamic",
    "Gringotts",
    "Monarch",
    "Aperture",
    "Nakatomi",
)
_CAMPAIGN_THEMES = ("Spring", "Brand", "Promo", "Retarget", "Launch", "Holiday")
_VERTICALS = ("retail", "travel", "finance", "gaming", "auto", "telecom", "food", "media")
_CURRENCIES_BY_ADVERTISER = (
    "USD",
    "USD",
    "USD",
    "EUR",
    "GBP",
    "EUR",
    "JPY",
    "BRL",
    "CAD",
    "AUD",
    "INR",
    "USD",
)


@dataclass(frozen=True)
class Advertiser:
    advertiser_id: str
    name: str
    vertical: str
    currency: str


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    advertiser_id: str
    name: str
    daily_budget_micros: int  # reporting currency (USD) micros
    conversion_rate: float  # of clicks


@dataclass(frozen=True)
class LineItem:
    line_item_id: str
    campaign_id: str
    base_bid_cpm: float  # in the advertiser's currency


@dataclass(frozen=True)
class Creative:
    creative_id: str
    campaign_id: str
    line_item_id: str
    ad_size: str


@dataclass(frozen=True)
class Publisher:
    publisher_id: str
    name: str
    floor_cpm_usd: float
    sites: tuple[str, ...]
    weight: float


@dataclass
class TruthModel:
    """The hidden click model: logit = intercept + sum of per-attribute effects."""

    intercept: float
    creative: dict[str, float] = field(default_factory=dict)
    publisher: dict[str, float] = field(default_factory=dict)
    device: dict[str, float] = field(default_factory=dict)
    ad_size: dict[str, float] = field(default_factory=dict)
    country: dict[str, float] = field(default_factory=dict)
    hour: tuple[float, ...] = ()
    frequency_slope: float = -0.25
    mobile_small_banner: float = -0.4  # an interaction a linear model cannot see

    def click_probability(
        self,
        creative_id: str,
        publisher_id: str,
        device: str,
        ad_size: str,
        country: str,
        hour: int,
        prior_impressions: int,
    ) -> float:
        logit = (
            self.intercept
            + self.creative[creative_id]
            + self.publisher[publisher_id]
            + self.device[device]
            + self.ad_size[ad_size]
            + self.country[country]
            + self.hour[hour]
            + self.frequency_slope * math.log1p(prior_impressions)
            + (self.mobile_small_banner if device == "mobile" and ad_size == "320x50" else 0.0)
        )
        return 1.0 / (1.0 + math.exp(-logit))


@dataclass
class Catalog:
    advertisers: list[Advertiser]
    campaigns: list[Campaign]
    line_items: list[LineItem]
    creatives: list[Creative]
    publishers: list[Publisher]
    truth: TruthModel
    # (line item, creative) pairs able to serve each ad size: the bidders of an auction.
    bidders_by_size: dict[str, list[tuple[LineItem, Creative]]]

    def advertiser_of(self, campaign_id: str) -> Advertiser:
        return self._advertiser_by_campaign[campaign_id]

    def campaign(self, campaign_id: str) -> Campaign:
        return self._campaign_by_id[campaign_id]

    def __post_init__(self) -> None:
        advertisers = {a.advertiser_id: a for a in self.advertisers}
        self._campaign_by_id = {c.campaign_id: c for c in self.campaigns}
        self._advertiser_by_campaign = {
            c.campaign_id: advertisers[c.advertiser_id] for c in self.campaigns
        }


def build_catalog(
    seed: int, advertisers: int = 12, campaigns_per_advertiser: int = 3, publishers: int = 40
) -> Catalog:
    rng = random.Random(f"catalog-{seed}")
    advertiser_list: list[Advertiser] = []
    campaign_list: list[Campaign] = []
    line_items: list[LineItem] = []
    creatives: list[Creative] = []
    for a in range(advertisers):
        currency = _CURRENCIES_BY_ADVERTISER[a % len(_CURRENCIES_BY_ADVERTISER)]
        advertiser = Advertiser(
            f"adv-{a + 1:03d}",
            f"{_BRANDS[a % len(_BRANDS)]} {_VERTICALS[a % len(_VERTICALS)].title()}",
            _VERTICALS[a % len(_VERTICALS)],
            currency,
        )
        advertiser_list.append(advertiser)
        for _ in range(campaigns_per_advertiser):
            c = len(campaign_list) + 1
            campaign = Campaign(
                campaign_id=f"cmp-{c:04d}",
                advertiser_id=advertiser.advertiser_id,
                name=f"{advertiser.name.split()[0]} {rng.choice(_CAMPAIGN_THEMES)} {c}",
                daily_budget_micros=rng.randrange(200, 5000) * 1_000_000,
                conversion_rate=rng.uniform(0.02, 0.12),
            )
            campaign_list.append(campaign)
            for _ in range(2):
                usd_bid = rng.uniform(0.8, 6.0)
                line_item = LineItem(
                    f"li-{len(line_items) + 1:05d}",
                    campaign.campaign_id,
                    round(usd_bid / USD_PER_UNIT[currency], 4),
                )
                line_items.append(line_item)
                for size in rng.sample(ALL_AD_SIZES, 3):
                    creatives.append(
                        Creative(
                            f"cr-{len(creatives) + 1:05d}",
                            campaign.campaign_id,
                            line_item.line_item_id,
                            size,
                        )
                    )
    publisher_list = []
    for p in range(publishers):
        sites = tuple(f"site-{p + 1:03d}-{s + 1}" for s in range(rng.randint(1, 4)))
        publisher_list.append(
            Publisher(
                f"pub-{p + 1:03d}",
                f"Publisher {p + 1}",
                round(rng.uniform(0.1, 1.5), 2),
                sites,
                rng.paretovariate(1.2),
            )
        )

    truth = TruthModel(
        intercept=math.log(0.03 / 0.97),
        creative={c.creative_id: rng.gauss(0, 0.35) for c in creatives},
        publisher={p.publisher_id: rng.gauss(0, 0.3) for p in publisher_list},
        device={"mobile": 0.15, "desktop": -0.1, "tablet": 0.05, "ctv": -0.6},
        ad_size={s: rng.gauss(0, 0.25) for s in ALL_AD_SIZES},
        country={c: rng.gauss(0, 0.15) for c in COUNTRIES},
        hour=tuple(0.25 * math.sin((h - 14) / 24 * 2 * math.pi) for h in range(24)),
    )
    bidders: dict[str, list[tuple[LineItem, Creative]]] = {s: [] for s in ALL_AD_SIZES}
    line_item_by_id = {li.line_item_id: li for li in line_items}
    for creative in creatives:
        bidders[creative.ad_size].append((line_item_by_id[creative.line_item_id], creative))
    return Catalog(
        advertiser_list, campaign_list, line_items, creatives, publisher_list, truth, bidders
    )
