"""Render a report's rows as CSV, PNG charts (matplotlib) and an HTML page that shows both.

A report lands in ``<reports_dir>/<start>_<end>[_<campaign>]/`` as ``<name>.csv``,
``<name>.html`` and ``<name>-<chart>.png``, beside an ``index.html`` of every report there. Each
file is written atomically, so a reader (or a browser) never sees half a report.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from adplatform.lakehouse.io import atomic_write_bytes
from adplatform.reporting.reports import REPORTS, Report, ReportRequest

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
PERCENT_COLUMNS = {"ctr", "cvr", "fill_rate", "pacing", "ctr_baseline"}
STATUS_COLOURS = {"over_budget": "#d64545", "on_pace": "#3ebd93", "under_pacing": "#f0b429"}
BLUE, ORANGE = "#2680c2", "#f0b429"
THOUSANDS = "{x:,.0f}"  # tick labels with thousands separators
DPI = 100


@dataclass(frozen=True)
class Chart:
    slug: str
    title: str
    draw: Callable[[Axes, pd.DataFrame], None]
    bars: Callable[[pd.DataFrame], int] = lambda rows: 0  # horizontal bars: sizes the height


def _barh(ax: Axes, labels: list[str], values: list[float], xlabel: str) -> None:
    ax.barh(labels, values, color=BLUE)
    ax.invert_yaxis()  # largest first, at the top
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_formatter(THOUSANDS)


def _daily_spend(ax: Axes, rows: pd.DataFrame) -> None:
    daily = rows.groupby("event_date")["spend_usd"].sum()
    ax.bar([d.isoformat() for d in daily.index], daily.to_numpy(), color=BLUE)
    ax.set_ylabel("spend (USD)")
    ax.yaxis.set_major_formatter(THOUSANDS)
    ax.tick_params(axis="x", labelrotation=45)


def _top_campaigns(ax: Axes, rows: pd.DataFrame) -> None:
    top = rows.groupby("campaign")["spend_usd"].sum().nlargest(10)
    _barh(ax, list(top.index), list(top.to_numpy()), "spend (USD)")


def _last_day_pacing(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["event_date"] == rows["event_date"].max()].sort_values(
        "pacing", ascending=False
    )


def _pacing(ax: Axes, rows: pd.DataFrame) -> None:
    last = _last_day_pacing(rows)
    ax.barh(
        list(last["campaign"]),
        list(last["pacing"].fillna(0) * 100),
        color=[STATUS_COLOURS[s] for s in last["status"]],
    )
    ax.invert_yaxis()
    for bound in (80, 100):
        ax.axvline(bound, color="#52606d", linestyle="--", linewidth=1)
    ax.set_xlabel(f"spend as % of daily budget on {last['event_date'].iloc[0]}")


def _creative_clicks(ax: Axes, rows: pd.DataFrame) -> None:
    labels = [f"{c} ({size})" for c, size in zip(rows["creative_id"], rows["ad_size"], strict=True)]
    _barh(ax, labels, list(rows["clicks"]), "clicks")


def _publisher_spend(ax: Axes, rows: pd.DataFrame) -> None:
    _barh(ax, list(rows["publisher"]), list(rows["spend_usd"]), "spend (USD)")


def _ctr_by(dimension: str) -> Callable[[Axes, pd.DataFrame], None]:
    def draw(ax: Axes, rows: pd.DataFrame) -> None:
        part = rows[rows["dimension"] == dimension]
        ax.bar(list(part["value"]), list(part["ctr"].fillna(0) * 100), color=BLUE)
        ax.set_ylabel("CTR (%)")

    return draw


def _anomaly_z(ax: Axes, rows: pd.DataFrame) -> None:
    labels = [f"{d} {c}" for d, c in zip(rows["event_date"], rows["campaign_id"], strict=True)]
    positions = range(len(labels))
    spend_z, ctr_z = list(rows["spend_z"].fillna(0)), list(rows["ctr_z"].fillna(0))
    ax.barh([p - 0.2 for p in positions], spend_z, 0.4, color=BLUE, label="spend z")
    ax.barh([p + 0.2 for p in positions], ctr_z, 0.4, color=ORANGE, label="CTR z")
    ax.set_yticks(list(positions), labels)
    ax.invert_yaxis()
    ax.axvline(0, color="#52606d", linewidth=1)
    ax.legend()
    ax.set_xlabel("standard deviations from the trailing 7-day baseline")


CHARTS: dict[str, tuple[Chart, ...]] = {
    "campaign_performance": (
        Chart("daily-spend", "Spend per day, all campaigns in the report", _daily_spend),
        Chart(
            "top-campaigns",
            "Top 10 campaigns by spend",
            _top_campaigns,
            lambda rows: min(10, rows["campaign"].nunique()),
        ),
    ),
    "pacing": (
        Chart(
            "last-day",
            "Pacing on the last day of the range (dashed: 80 % and 100 % of budget)",
            _pacing,
            lambda rows: len(_last_day_pacing(rows)),
        ),
    ),
    "top_creatives": (Chart("clicks", "Clicks per creative", _creative_clicks, len),),
    "top_publishers": (Chart("spend", "Spend per publisher", _publisher_spend, len),),
    "ctr_breakdown": (
        Chart("hour", "CTR by hour of day (UTC)", _ctr_by("hour")),
        Chart("device", "CTR by device type", _ctr_by("device_type")),
        Chart("country", "CTR by country", _ctr_by("country")),
    ),
    "anomalies": (
        Chart("z-scores", "Spend and CTR z-scores of the flagged campaign-days", _anomaly_z, len),
    ),
}


def chart_png(chart: Chart, rows: pd.DataFrame) -> tuple[bytes, int, int]:
    """The chart as PNG bytes, with its width and height in pixels."""
    bars = chart.bars(rows) if len(rows) else 0
    height = max(3.5, 0.28 * bars + 1.2)
    figure = Figure(figsize=(9, height), dpi=DPI, layout="constrained")
    ax = figure.subplots()
    if len(rows):
        chart.draw(ax, rows)
    else:
        ax.text(0.5, 0.5, "no data in this range", ha="center", va="center", fontsize=14)
        ax.set_axis_off()
    ax.set_title(chart.title, loc="left")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue(), int(9 * DPI), round(height * DPI)


def _cell(column: str, value: object) -> tuple[str, bool]:
    """The display text of a value, and whether it is a number (right-aligned)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-", True
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value), False
    if isinstance(value, int):
        return f"{value:,}", True
    if column in PERCENT_COLUMNS:
        return f"{value:.2%}", True
    return (f"{value:,.2f}" if column.endswith("_usd") else f"{value:.2f}"), True


def render_report(
    report: Report, request: ReportRequest, rows: pd.DataFrame, out_dir: Path
) -> list[Path]:
    """Write the report's CSV, charts and HTML page into ``out_dir``; returns the files."""
    written = [
        atomic_write_bytes(rows.to_csv(index=False).encode(), out_dir / f"{report.name}.csv")
    ]
    charts = []
    for chart in CHARTS[report.name]:
        png, width, height = chart_png(chart, rows)
        path = atomic_write_bytes(png, out_dir / f"{report.name}-{chart.slug}.png")
        written.append(path)
        charts.append({"file": path.name, "title": chart.title, "width": width, "height": height})
    records = rows.astype(object).where(rows.notna(), None).itertuples(index=False)
    page = TEMPLATES.get_template("report.html").render(
        report=report,
        request=request,
        charts=charts,
        columns=list(rows.columns),
        rows=[
            [_cell(c, v) for c, v in zip(rows.columns, record, strict=True)] for record in records
        ],
        csv_name=f"{report.name}.csv",
        generated_at=_now(),
    )
    written.append(atomic_write_bytes(page.encode(), out_dir / f"{report.name}.html"))
    return written


def write_index(request: ReportRequest, out_dir: Path) -> Path:
    """``index.html`` linking every report rendered in ``out_dir``."""
    present = [r for r in REPORTS.values() if (out_dir / f"{r.name}.html").exists()]
    page = TEMPLATES.get_template("index.html").render(
        request=request, reports=present, generated_at=_now()
    )
    return atomic_write_bytes(page.encode(), out_dir / "index.html")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
