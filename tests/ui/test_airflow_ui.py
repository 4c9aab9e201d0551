"""The Airflow 3 UI of the session's real Airflow (FAB auth manager), in headless Chromium: the
DAG list, the platform_provision trigger form and its refusal of bad params, and what each role
is shown. Nothing here triggers a run or changes a DAG's pause state: the session's Airflow is
shared with tests/provisioning."""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from tests.dags.test_dag_folder import EXPECTED_DAG_IDS
from tests.ui.conftest import AirflowUi, Page

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROVISION = "platform_provision"
MODAL = "//*[@role='dialog' and @aria-modal='true']"
# Loaded once the page's own requests for them have come back and nothing shows a skeleton.
IMPORT_ERRORS_LOADED = """
return performance.getEntriesByType("resource").some(r => r.name.includes("/api/v2/importErrors"))
    && document.querySelectorAll(".chakra-skeleton").length === 0
"""


def listed_dags(page: Page, count: int) -> set[str]:
    """The DAG ids the DAG list shows (links to their own pages, in the card or the table
    view), once its heading says it holds ``count`` DAGs."""
    page.element(f"//h2[normalize-space()='{count} Dags']")
    links = page.driver.find_elements("xpath", "//a[@href = concat('/dags/', normalize-space())]")
    return {link.text for link in links}


def field(label: str) -> str:
    """The form row (label, control, description, error) of the field labelled ``label``."""
    return f"{MODAL}//label[normalize-space(text())='{label}']/ancestor::*[@role='group'][1]"


def test_admin_sees_every_dag_and_no_import_errors(airflow_ui: AirflowUi, page: Page):
    admin = airflow_ui.client()
    assert admin.import_errors.get_import_errors().import_errors == []

    airflow_ui.login(page, "admin")
    page.browser.open(f"{airflow_ui.url}/dags")
    page.click("//button[@aria-label='Show table view']")

    assert listed_dags(page, len(EXPECTED_DAG_IDS)) == EXPECTED_DAG_IDS
    page.until(lambda driver: driver.execute_script(IMPORT_ERRORS_LOADED))
    assert "Import Error" not in page.element("//body").text
    page.screenshot("airflow-dags.png", height=1000)


def test_the_provision_form_shows_its_params_and_refuses_a_value_outside_the_schema(
    airflow_ui: AirflowUi, page: Page
):
    """As platform-admin, the role that provisions: the Trigger button on the DAG page opens
    the form; a value outside the params' schema, typed into its JSON editor, is refused with
    the schema's error and no run exists afterwards."""
    client = airflow_ui.client("platform-admin")
    params = client.dags.get_dag_details(PROVISION).params or {}
    assert list(params) == ["environment", "cloud_provider", "components", "dry_run"]
    runs_before = client.dag_runs.get_dag_runs(PROVISION).total_entries
    paused = client.dags.get_dag(PROVISION).is_paused

    airflow_ui.login(page, "platform-admin")
    page.browser.open(f"{airflow_ui.url}/dags/{PROVISION}")
    page.click("//button[@aria-label='Trigger Dag'][normalize-space()='Trigger']")
    page.element(f"{MODAL}//h2[normalize-space()='Trigger Dag - {PROVISION}']")
    for name, param in params.items():
        row = page.element(field(param["schema"].get("title", name)))
        assert param["description"] in row.text
        defaults = param["value"] if isinstance(param["value"], list) else [param["value"]]
        if param["schema"].get("type") == "boolean":
            assert row.find_element("xpath", ".//input[@type='checkbox']").is_selected() is True
        else:
            assert all(str(value) in row.text.splitlines() for value in defaults), row.text
    page.screenshot("airflow-trigger-form.png", height=1450)

    if paused:  # the form offers to unpause on trigger; this test changes nothing
        page.click(f"{MODAL}//label[contains(normalize-space(), 'Unpause {PROVISION}')]")
    page.click(f"{MODAL}//button[normalize-space()='Advanced Options']")
    editor = page.element(field("Configuration JSON"))

    # Select the environment's value with the keyboard and type over it, as a user would. Mouse
    # positions are at the mercy of the panel still sliding open (in CI a double-click on the
    # value landed on the next line), so the mouse only gives the editor the focus. The edit is
    # the same whatever the value is, so a try whose keys went nowhere (seen once: the editor
    # kept its text) is simply made again.
    def type_the_environment(driver: Any) -> bool:
        editor.find_element("xpath", ".//span[text()='\"local\"' or text()='\"moon\"']").click()
        if driver.switch_to.active_element.get_attribute("role") != "textbox":
            return False
        keys = ActionChains(driver)
        keys.key_down(Keys.CONTROL).send_keys(Keys.HOME).key_up(Keys.CONTROL)  # line 1: {
        keys.send_keys(Keys.DOWN, Keys.END, Keys.LEFT, Keys.LEFT)  # line 2: ..."local|",
        keys.key_down(Keys.CONTROL).key_down(Keys.SHIFT).send_keys(Keys.LEFT)  # ..."|local|",
        keys.key_up(Keys.SHIFT).key_up(Keys.CONTROL).send_keys("moon").perform()
        return '"environment": "moon",' in editor.text

    page.until(type_the_environment)
    page.click(f"{MODAL}//label[normalize-space()='Dag Run Note']")  # leave the editor
    page.click(f"{MODAL}//button[normalize-space()='Trigger']")

    error = page.element(f"{MODAL}//*[@data-testid='error-alert']")
    assert "400 Bad Request" in error.text
    assert (
        "Invalid input for param environment: 'moon' is not one of "
        "['local', 'staging', 'production']"
    ) in error.text
    page.driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", error)
    page.screenshot("airflow-trigger-refused.png", height=1300)
    assert client.dag_runs.get_dag_runs(PROVISION).total_entries == runs_before
    assert client.dags.get_dag(PROVISION).is_paused == paused


def test_the_analyst_is_shown_the_report_dags_but_not_provisioning(
    airflow_ui: AirflowUi, page: Page
):
    admin = airflow_ui.client()
    dags = admin.dags.get_dags(limit=1000).dags
    tags = {dag.dag_id: {tag.name for tag in dag.tags} for dag in dags}
    provisioning = {dag_id for dag_id, names in tags.items() if "provisioning" in names}
    analysts = {dag_id for dag_id, names in tags.items() if names & {"reporting", "lakehouse"}}
    assert "ad_reports_daily" in analysts and PROVISION in provisioning

    airflow_ui.login(page, "analyst")
    page.browser.open(f"{airflow_ui.url}/dags")

    listed = listed_dags(page, len(analysts))
    assert listed == analysts
    assert not listed & provisioning
