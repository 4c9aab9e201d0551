"""The session's Airflow and MLflow as their users meet them: in the session's headless Chromium.

Waits are explicit (WebDriverWait on an element or a condition of the page), with generous
ceilings for a loaded machine; elements are found by what a user reads (labels, headings, link
text), by ARIA roles, or by the test ids the UIs ship for their own tests, never by the generated
CSS class names of the React UIs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as visible
from selenium.webdriver.support.ui import WebDriverWait

from adplatform.airflow_client import AirflowClient
from adplatform.localstack import AirflowServices, LocalStack, password_file
from adplatform.settings import Settings, load_settings
from tests.conftest import Browser, publish_screenshot
from tests.dags.test_dag_folder import EXPECTED_DAG_IDS

UI_WAIT = 120  # seconds: a ceiling for one page or request on a loaded machine, not a measure


@dataclass
class Page:
    """The browser and what every UI test does with it: find, wait, screenshot."""

    browser: Browser
    shots: Path

    @property
    def driver(self) -> Any:
        return self.browser.driver

    def until(self, condition: Callable[[Any], Any]) -> Any:
        """``condition``'s first truthy value; an element the React UI re-rendered meanwhile
        is looked up again on the next try."""
        wait = WebDriverWait(
            self.driver, UI_WAIT, ignored_exceptions=[StaleElementReferenceException]
        )
        return wait.until(condition)

    def element(self, xpath: str) -> WebElement:
        """The element at ``xpath`` once it is present and visible."""
        return self.until(visible.visibility_of_element_located((By.XPATH, xpath)))

    def click(self, xpath: str) -> WebElement:
        found = self.until(visible.element_to_be_clickable((By.XPATH, xpath)))
        found.click()
        return found

    def screenshot(self, name: str, height: int | None = None) -> Path:
        """What the window shows (grown to ``height``), as ``name`` in the test's folder and,
        with UPDATE_GOLDEN=1, in tests/screenshots/ for the docs."""
        shot = self.browser.screenshot(self.shots / name, full_page=False, height=height)
        assert shot.read_bytes().startswith(b"\x89PNG")
        publish_screenshot(shot, name)
        return shot


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture
def page(browser: Browser, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Page]:
    """The session's browser for one test; what it showed when the test failed is kept as
    failure.png in the test's folder."""
    yield Page(browser, tmp_path)
    if request.node.stash.get(FAILED, False):
        shot = browser.screenshot(tmp_path / "failure.png", full_page=False)
        print(f"the browser showed this when the test failed: {shot}")


class AirflowUi:
    """The session's Airflow, for the browser (``login``) and for REST checks (``client``)."""

    def __init__(self, service: AirflowServices) -> None:
        self.service = service
        self.url = service.url
        self._clients: dict[str, AirflowClient] = {}

    def client(self, user: str = "admin") -> AirflowClient:
        """A REST client logged in as ``user``, one per user for the session."""
        if user not in self._clients:
            self._clients[user] = self.service.client(user)
        return self._clients[user]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def login(self, page: Page, user: str) -> None:
        """Log ``user`` in through FAB's login form, forgetting whoever was logged in before
        (FAB's session cookie and the UI's token in local storage).

        A request the page loaded only to clear them may still finish after the form's page
        (the browser fetches a page's icon late), and its response then sets a new session
        cookie whose CSRF token the form does not carry: FAB answers "The CSRF tokens do not
        match" and the form is filled in again, as a person would."""
        navigation = "//a[@aria-label='Dags']"  # the UI's navigation: logged in
        for _ in range(3):
            page.browser.open(f"{self.url}/auth/login/")
            page.driver.delete_all_cookies()
            page.driver.execute_script("localStorage.clear(); sessionStorage.clear()")
            page.browser.open(f"{self.url}/auth/login/")
            page.element("//input[@name='username']").send_keys(user)
            password = page.element("//input[@name='password']")
            password.send_keys(password_file(self.service.home, user).read_text().strip())
            password.submit()
            page.until(
                lambda driver: (
                    driver.find_elements(By.XPATH, navigation)
                    or "CSRF tokens do not match" in driver.page_source
                )
            )
            if page.driver.find_elements(By.XPATH, navigation):
                return
        raise AssertionError(f"{user} could not log in: the CSRF tokens never matched")


@pytest.fixture(scope="session")
def airflow_ui(airflow_server: Settings, local_stack: LocalStack) -> Iterator[AirflowUi]:
    """The session's Airflow once its DAG processor has parsed every DAG of the folder."""
    service = local_stack.services["airflow"]
    assert isinstance(service, AirflowServices)
    ui = AirflowUi(service)
    ui.client().wait_for_dags(EXPECTED_DAG_IDS)
    yield ui
    ui.close()


@dataclass(frozen=True)
class CtrRun:
    run_id: str
    run_name: str
    metrics: dict[str, float]


@pytest.fixture(scope="session")
def ctr_run(mlflow_server: Settings, tmp_path_factory: pytest.TempPathFactory) -> CtrRun:
    """A real CTR training run logged to the session's MLflow server by the project's pipeline
    (what the ``ctr_model_training`` DAG runs), on four small simulated Gold days.

    The Gold days and the serving store live under a private data root, so the session's own
    Gold partitions (tests/ml) stay as they are; the experiment and the registry are the server's.
    """
    from adplatform.testing.ctr_training import write_simulated_ctr_training
    from ml import registry
    from ml.pipeline import Workspace, run_all
    from ml.train import TrainingParams

    settings = load_settings(
        data_root=tmp_path_factory.mktemp("ui-ctr"), mlflow_port=mlflow_server.mlflow_port
    )
    write_simulated_ctr_training(settings, date(2026, 3, 2), days=4, requests_per_day=20_000)
    summary = run_all(
        settings,
        Workspace.for_run(settings, "ui"),
        params=TrainingParams(max_rounds=200, early_stopping_rounds=20),
    )
    run = registry.connect(settings).get_run(summary["run_id"])
    return CtrRun(run.info.run_id, run.info.run_name, dict(run.data.metrics))
