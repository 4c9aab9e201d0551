"""The HTML reports as a reader sees them: opened in headless Chromium, every chart loaded.

Uses the synthetic Gold sample (a fortnight of the catalogue's market) so the pages look like
real ones; with UPDATE_GOLDEN=1 the top-publishers page's screenshot is refreshed for the README.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from adplatform.clickhouse.client import clickhouse_client
from adplatform.clickhouse.migrate import migrate
from adplatform.clickhouse.publish import publish_dimensions, publish_facts
from adplatform.events.catalog import build_catalog
from adplatform.lakehouse.reference import write_reference_tables
from adplatform.reporting.render import CHARTS, render_report, write_index
from adplatform.reporting.reports import REPORTS, parse_request, report_window, run_report
from adplatform.settings import load_settings
from adplatform.testing.gold_hourly import write_sample_gold
from tests.conftest import publish_screenshot

pytestmark = pytest.mark.slow
IMAGES = """
return Array.from(document.images).map(
    image => [image.getAttribute("src"), image.complete, image.naturalWidth, image.naturalHeight]
)
"""


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """Every report rendered from a published sample: 14 days, the last 7 reported."""
    data_root = tmp_path_factory.mktemp("html") / "data"
    settings = load_settings(data_root=data_root, clickhouse_dsn=f"chdb://{data_root}/clickhouse")
    catalog = build_catalog(7)
    write_reference_tables(settings, catalog)
    today = date.today()
    write_sample_gold(settings, catalog, today - timedelta(days=14), 14, rows_per_hour=2500)
    request = parse_request(*report_window(today))
    out = settings.reports_dir / request.slug
    with clickhouse_client(settings) as client:
        migrate(client)
        publish_dimensions(client, settings)
        publish_facts(client, settings)
        frames = {name: run_report(client, report, request) for name, report in REPORTS.items()}
    for name, rows in frames.items():
        render_report(REPORTS[name], request, rows, out)
    write_index(request, out)
    return out


@pytest.mark.parametrize("name", list(REPORTS))
def test_each_report_page_shows_its_charts_and_rows(browser, report_dir, name):
    browser.open((report_dir / f"{name}.html").as_uri())

    images = browser.driver.execute_script(IMAGES)

    assert [src for src, *_ in images] == [f"{name}-{c.slug}.png" for c in CHARTS[name]]
    for src, complete, width, height in images:
        assert complete and width > 0 and height > 0, f"{src} did not load"
    assert browser.driver.title.startswith(REPORTS[name].title)
    cells = browser.driver.find_elements("css selector", "tbody tr")
    assert len(cells) > 0  # the sample has rows for every report, anomalies included
    csv_link = browser.driver.find_element("link text", "Download CSV")
    assert csv_link.get_attribute("href").endswith(f"{name}.csv")


def test_the_index_links_every_report(browser, report_dir, tmp_path):
    browser.open((report_dir / "index.html").as_uri())
    links = [a.get_attribute("href") for a in browser.driver.find_elements("css selector", "li a")]
    assert [link.rsplit("/", 1)[1] for link in links[::2]] == [f"{n}.html" for n in REPORTS]

    browser.open((report_dir / "top_publishers.html").as_uri())
    shot = browser.screenshot(tmp_path / "top_publishers.png", full_page=False)
    assert shot.read_bytes().startswith(b"\x89PNG")
    publish_screenshot(shot, "report-top-publishers.png")
