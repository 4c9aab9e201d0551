"""Reference (dimension) tables from the ad catalog: advertisers, campaigns, creatives, ..."""

from __future__ import annotations

import pyarrow as pa

from adplatform.events.catalog import Catalog
from adplatform.lakehouse.io import atomic_write_parquet
from adplatform.lakehouse.tables import REFERENCE_TABLES, reference_path
from adplatform.settings import Settings


def write_reference_tables(settings: Settings, catalog: Catalog) -> list[str]:
    """Replace every reference table with the catalog's current contents (idempotent)."""
    rows = {
        "advertisers": [vars(a) for a in catalog.advertisers],
        "campaigns": [
            {k: v for k, v in vars(c).items() if k != "conversion_rate"} for c in catalog.campaigns
        ],
        "line_items": [vars(li) for li in catalog.line_items],
        "creatives": [vars(c) for c in catalog.creatives],
        "publishers": [
            {
                "publisher_id": p.publisher_id,
                "name": p.name,
                "floor_cpm_usd": p.floor_cpm_usd,
                "site_count": len(p.sites),
            }
            for p in catalog.publishers
        ],
    }
    for name, schema in REFERENCE_TABLES.items():
        atomic_write_parquet(
            pa.Table.from_pylist(rows[name], schema=schema), reference_path(settings, name)
        )
    return list(rows)
