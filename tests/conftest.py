"""Session-wide fixtures: settings under a temporary data root, and the real services.

Each service starts at most once per test session, on free ports, and is stopped at the end;
tests that need one ask for its fixture. Nothing here skips: a service that cannot start fails
the tests that need it, with the service's own error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from adplatform.settings import REPO_ROOT, Settings, get_settings, load_settings

# In-process Airflow (dag.test(), DagBag) gets a private home and SQLite database, set before
# anything imports airflow, so tests never touch a developer's ~/airflow or the local stack.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="adplatform-tests-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
)

from adplatform.localstack import LocalStack, free_port  # noqa: E402
from adplatform.provisioning.cluster import PORT_SPAN  # noqa: E402

SCREENSHOTS = REPO_ROOT / "tests" / "screenshots"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Local-profile settings with a private data root (no services)."""
    return load_settings(data_root=tmp_path / "data")


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for this session's services: free ports, a private data root."""
    return load_settings(
        data_root=tmp_path_factory.mktemp("stack"),
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        mlflow_port=free_port(),
        spark_connect_port=free_port(),
        spark_driver_memory="1g",
        spark_shuffle_partitions=2,  # the tests' data is small
        airflow_port=free_port(span=3),  # api + worker and triggerer log servers
        jupyterhub_port=free_port(span=3),  # proxy, proxy API, hub
        cluster_api_port=free_port(span=PORT_SPAN),  # the local cluster and its host stand-ins
        # The provisioning tests fill this chart mirror (tests/provisioning/conftest.py), and
        # the simulated cluster is ready in seconds: a failing release fails within a minute.
        helm_chart_mirror=str(tmp_path_factory.mktemp("chart-mirror")),
        helm_wait_cap_seconds=45,
    )


@pytest.fixture(scope="session")
def stack_env(stack_settings: Settings) -> Iterator[Settings]:
    """Export the session's settings as ADP_* variables, for code that reads the environment
    (Airflow tasks, CLI commands run in-process)."""
    saved = dict(os.environ)
    os.environ.update(stack_settings.environment())
    os.environ.update(stack_settings.airflow_connections())
    get_settings.cache_clear()
    yield stack_settings
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def local_stack(stack_settings: Settings) -> Iterator[LocalStack]:
    stack = LocalStack(stack_settings)
    yield stack
    stack.down()


@pytest.fixture(scope="session")
def kafka(local_stack: LocalStack, stack_settings: Settings) -> Settings:
    """A running Kafka broker; returns the settings that point at it."""
    local_stack.up(["kafka"])
    return stack_settings


@pytest.fixture(scope="session")
def mlflow_server(local_stack: LocalStack, stack_settings: Settings) -> Settings:
    local_stack.up(["mlflow"])
    return stack_settings


@pytest.fixture(scope="session")
def spark_connect(local_stack: LocalStack, stack_settings: Settings) -> Settings:
    """The Spark Connect server the transform's jobs run on, once per session."""
    local_stack.up(["spark-connect"])
    return stack_settings


@pytest.fixture(scope="session")
def airflow_server(local_stack: LocalStack, stack_settings: Settings) -> Settings:
    local_stack.up(["airflow"])
    return stack_settings


@pytest.fixture(scope="session")
def jupyterhub_server(local_stack: LocalStack, stack_settings: Settings) -> Settings:
    """JupyterHub, once per session: notebooks in it see this session's services and data."""
    local_stack.up(["jupyterhub"])
    return stack_settings


# Simulated Gold CTR days (the `gold` fixture): about 47,000 impressions and 1,500 clicks a day.
GOLD_FIRST_DAY = date(2026, 3, 2)
GOLD_DAYS = 4
GOLD_REQUESTS_PER_DAY = 60_000


@pytest.fixture(scope="session")
def gold(stack_settings: Settings) -> Settings:
    """Four simulated days of Gold CTR training data under the session's data root."""
    from adplatform.testing.ctr_training import write_simulated_ctr_training

    write_simulated_ctr_training(stack_settings, GOLD_FIRST_DAY, GOLD_DAYS, GOLD_REQUESTS_PER_DAY)
    return stack_settings


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata database for in-process Airflow (dag.test())."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return _AIRFLOW_HOME


class Browser:
    """A headless Chromium session (Debian's chromium and chromium-driver) driven by selenium.

    ``driver`` is the selenium WebDriver; ``screenshot`` saves the whole page as a PNG.
    """

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def open(self, url: str) -> None:
        self.driver.get(url)

    def screenshot(self, path: Path, full_page: bool = True, height: int | None = None) -> Path:
        """Save the page as a PNG at ``path``: all of it, or only what the window shows.

        Single-page apps (the Airflow and MLflow UIs) scroll inside their own panes, so their
        page is never taller than the window: ``height`` grows the window to that height for the
        shot instead.
        """
        window = self.driver.get_window_size()
        if height is None and full_page:
            height = self.driver.execute_script("return document.documentElement.scrollHeight")
        if height is not None:
            self.driver.set_window_size(window["width"], max(height, window["height"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not self.driver.save_screenshot(str(path)):
                raise RuntimeError(f"chromium could not save a screenshot to {path}")
        finally:
            self.driver.set_window_size(window["width"], window["height"])
        return path


def publish_screenshot(shot: Path, name: str) -> None:
    """With UPDATE_GOLDEN=1, copy a screenshot a test took into tests/screenshots/, where the
    docs show it: the docs' pictures are refreshed on purpose, by the tests, never by hand."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOTS / name)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One headless Chromium for the session, with a fresh profile and no background traffic."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        yield Browser(driver)
    finally:
        driver.quit()


def run_dag(
    dag_id: str, conf: dict[str, Any] | None = None, *, retries: int | None = None, **kwargs: Any
) -> Any:
    """Run one of our DAGs in-process with ``dag.test()`` and return its DagRun.

    Needs the ``airflow_db`` fixture (and ``stack_env`` when tasks read settings). ``retries``
    overrides every task's, e.g. 0 for a run meant to fail without waiting out the back-off.
    """
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / f"{dag_id}.py"), safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[dag_id]
    if retries is not None:
        for task in dag.tasks:
            task.retries = retries
    return dag.test(run_conf=conf, **kwargs)


# The provisioning tools (`make tools`: OpenTofu, Helm, kubectl, a Kubernetes control plane, kwok)
# take about a quarter of an hour to compile on a fresh 2-core machine. Rather than make the
# whole suite wait, the build runs in the background (niced, so the tests keep the CPU they
# need) while the tests that do not need it run; those that do are collected last and wait.
TOOLS_BUILD = pytest.StashKey[subprocess.Popen[bytes]]()
BUILD_TOOLS = REPO_ROOT / "infra" / "tools" / "build-tools.sh"
TOOLS_LOG = REPO_ROOT / ".tools" / "build.log"
NEEDS_TOOLS = "tests/provisioning/"


def pytest_sessionstart(session: pytest.Session) -> None:
    TOOLS_LOG.parent.mkdir(exist_ok=True)
    # One build at a time in this checkout: two sessions would write the same binaries.
    build = ["flock", str(TOOLS_LOG.with_suffix(".lock")), "nice", "-n", "15", str(BUILD_TOOLS)]
    with TOOLS_LOG.open("wb") as log:
        session.config.stash[TOOLS_BUILD] = subprocess.Popen(
            build,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    build = session.config.stash.get(TOOLS_BUILD, None)
    if build is not None and build.poll() is None:
        build.terminate()
        build.wait()


def needs_tools(item: pytest.Item) -> bool:
    return item.nodeid.startswith(NEEDS_TOOLS)


# How long the first test that needs the tools may wait for their build (then it runs as any
# other): on a fresh machine the build outlasts the lakehouse tests by more than the per-test
# timeout, and every provisioning test would fail with it.
TOOLS_BUILD_WAIT_SECONDS = 3600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=needs_tools)  # stable: file order within each group
    if first := next((item for item in items if needs_tools(item)), None):
        marker = first.get_closest_marker("timeout")
        own = marker.args[0] if marker and marker.args else float(first.config.getini("timeout"))
        first.add_marker(pytest.mark.timeout(TOOLS_BUILD_WAIT_SECONDS + own), append=False)


@pytest.fixture(scope="session")
def provisioning_tools(pytestconfig: pytest.Config) -> Path:
    """The provisioning tools, once the background build has finished (fails with its log)."""
    build = pytestconfig.stash[TOOLS_BUILD]
    if build.wait() != 0:
        tail = TOOLS_LOG.read_text(errors="replace")[-3000:]
        pytest.fail(f"building the provisioning tools failed (see {TOOLS_LOG}):\n{tail}")
    return REPO_ROOT / ".tools" / "bin"


@pytest.fixture(autouse=True)
def _tools_for_those_that_need_them(request: pytest.FixtureRequest) -> None:
    if needs_tools(request.node):
        request.getfixturevalue("provisioning_tools")
