"""The report catalogue, the validation of report parameters, and running a report.

Each report is one SQL file, ``sql/<name>.sql``, whose parameters are bound by ClickHouse
(``{start:Date}``), never formatted into the text. Parameters are checked before any query runs:
dates must be ISO dates in order, a campaign must look like an id and exist, numbers must be in
range; anything else is refused with a message naming the bad value and the fix.

Cheap to import (the report DAG lists the reports at parse time): pandas and clickhouse-connect
are only used inside functions.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adplatform.clickhouse.migrate import require_current_schema

if TYPE_CHECKING:
    import pandas as pd
    from clickhouse_connect.driver.client import Client

    from adplatform.settings import Settings

SQL_DIR = Path(__file__).parent / "sql"
MAX_DAYS = 366
DEFAULT_DAYS = 7
DEFAULT_LIMIT = 10
DEFAULT_THRESHOLD = 3.0
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CAMPAIGN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PLACEHOLDER = re.compile(r"\{(\w+):")


class ReportError(ValueError):
    """A report request is invalid; the message names the bad value and the fix."""


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    summary: str

    @cached_property
    def sql(self) -> str:
        return (SQL_DIR / f"{self.name}.sql").read_text()

    @property
    def parameters(self) -> set[str]:
        return set(_PLACEHOLDER.findall(self.sql))


REPORTS: dict[str, Report] = {
    report.name: report
    for report in (
        Report(
            "campaign_performance",
            "Daily campaign performance",
            "Impressions, clicks, conversions, spend and revenue per campaign and day, with "
            "CTR, CVR, eCPM, CPC and ROAS.",
        ),
        Report(
            "pacing",
            "Pacing vs budget",
            "Each campaign's daily spend against its daily budget: over budget above 100 %, "
            "under-pacing below 80 %.",
        ),
        Report(
            "top_creatives",
            "Top creatives",
            "The creatives with the most clicks over the range, with CTR and cost per click.",
        ),
        Report(
            "top_publishers",
            "Top publishers",
            "Where the spend went: publishers by spend, with fill rate, CTR and eCPM.",
        ),
        Report(
            "ctr_breakdown",
            "CTR by hour, device and country",
            "Click-through rate by hour of day (UTC), device type and country.",
        ),
        Report(
            "anomalies",
            "Anomaly flags",
            "Campaign-days whose spend or CTR is far (|z| at or above the threshold) from the "
            "campaign's trailing 7-day baseline.",
        ),
    )
}


@dataclass(frozen=True)
class ReportRequest:
    """Validated report parameters; build one with :func:`parse_request`."""

    start: date
    end: date
    campaign: str = ""  # "" = all campaigns
    limit: int = DEFAULT_LIMIT
    threshold: float = DEFAULT_THRESHOLD

    @property
    def slug(self) -> str:
        """The name of the folder its reports land in."""
        window = f"{self.start.isoformat()}_{self.end.isoformat()}"
        return f"{window}_{self.campaign}" if self.campaign else window

    def parameters_for(self, report: Report) -> dict[str, Any]:
        values = {
            "start": self.start,
            "end": self.end,
            "campaign": self.campaign,
            "limit": self.limit,
            "threshold": self.threshold,
        }
        return {name: values[name] for name in report.parameters}


def report_window(
    today: date,
    end: str | date | None = None,
    start: str | date | None = None,
    days: int = DEFAULT_DAYS,
) -> tuple[date, date]:
    """The window [start, end]: ``end`` defaults to the day before ``today``, ``start`` to
    ``days`` days ending at ``end``."""
    last = _parse_date("end", end) if end else today - timedelta(days=1)
    first = _parse_date("start", start) if start else last - timedelta(days=days - 1)
    return first, last


def _parse_date(name: str, value: str | date) -> date:
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        if not _ISO_DATE.match(text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise ReportError(
            f"{name} {value!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-26"
        ) from None


def parse_request(
    start: str | date,
    end: str | date,
    campaign: str | None = None,
    limit: int | str | None = None,
    threshold: float | str | None = None,
) -> ReportRequest:
    """Check report parameters from a user (CLI, DAG params) and return them typed."""
    first, last = _parse_date("start", start), _parse_date("end", end)
    if first > last:
        raise ReportError(
            f"the date range is inverted: start {first} is after end {last}; swap them"
        )
    days = (last - first).days + 1
    if days > MAX_DAYS:
        raise ReportError(
            f"the range {first} to {last} covers {days} days; a report covers at most "
            f"{MAX_DAYS}: split it"
        )
    campaign = (campaign or "").strip()
    if campaign and not _CAMPAIGN_ID.match(campaign):
        raise ReportError(
            f"campaign {campaign!r} is not a campaign id: ids are letters, digits, '-', '_' "
            "and '.' (e.g. cmp-0001); see `adplatform report campaigns`"
        )
    return ReportRequest(
        first,
        last,
        campaign,
        _parse_number("limit", limit, DEFAULT_LIMIT, int, 1, 1000),
        _parse_number("threshold", threshold, DEFAULT_THRESHOLD, float, 0.5, 20.0),
    )


def _parse_number(
    name: str, value: object, default: float, kind: type, low: float, high: float
) -> Any:
    if value is None or value == "":
        return default
    try:
        number = kind(value)
        if isinstance(value, float) and kind is int and not value.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        expected = "an integer" if kind is int else "a number"
        raise ReportError(f"{name} {value!r} is not {expected}") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise ReportError(f"{name} {value!r} is out of range: use {low:g} to {high:g}")
    return number


def campaigns(client: Client) -> list[tuple[str, str]]:
    """(campaign id, name) of every campaign in ClickHouse, by id."""
    return [
        (str(cid), str(name))
        for cid, name in client.query(
            "SELECT campaign_id, name FROM adplatform.dim_campaigns ORDER BY campaign_id"
        ).result_rows
    ]


def check_campaign(client: Client, request: ReportRequest) -> None:
    """Refuse a campaign that ClickHouse does not know, suggesting the nearest ids."""
    if not request.campaign:
        return
    known = [cid for cid, _ in campaigns(client)]
    if request.campaign in known:
        return
    close = difflib.get_close_matches(request.campaign, known, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "see `adplatform report campaigns`"
    raise ReportError(f"unknown campaign {request.campaign!r} ({len(known)} known): {hint}")


def check_request(client: Client, request: ReportRequest, settings: Settings) -> None:
    """What only ClickHouse (and Gold) can tell: the schema is current, the campaign exists,
    and every day of the window that Gold holds is published as it is now."""
    require_current_schema(client)
    check_campaign(client, request)
    require_published(client, request, settings)


def require_published(client: Client, request: ReportRequest, settings: Settings) -> None:
    """Refuse a window with Gold days that ClickHouse lacks or holds in an older version: the
    reports would show partial numbers. (Days without Gold data are simply empty.)"""
    from adplatform.clickhouse.publish import days_to_publish

    pending = [
        day.event_date.isoformat()
        for day in days_to_publish(client, settings)
        if request.start <= day.event_date <= request.end
    ]
    if pending:
        raise ReportError(
            f"Gold has data for {', '.join(pending)} that ClickHouse does not hold yet, so the "
            "reports would show partial numbers: they render after the next clickhouse_publish "
            "(or run `adplatform clickhouse publish` first)"
        )


def run_report(client: Client, report: Report, request: ReportRequest) -> pd.DataFrame:
    """The report's rows for ``request``, with the parameters bound server-side."""
    table = client.query_arrow(
        report.sql,
        parameters=request.parameters_for(report),
        # NULL, not '' or 0, for a dimension row that is missing: the same as standard SQL.
        settings={"join_use_nulls": 1},
    )
    return table.to_pandas()
