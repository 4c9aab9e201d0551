"""The session's JupyterHub as a data scientist meets it, in headless Chromium: a wrong password
is refused; the right one starts their JupyterLab; the CTR notebook opened from the file browser
runs every cell on the session's Gold days and MLflow server, and its run link leads into the
MLflow UI.

JupyterLab is found by what its users read and by its ``jp-`` class names, the stable ones its
own UI tests (Galata) and themes use.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from adplatform.localstack import JUPYTERHUB_USER, JupyterHubServer, LocalStack
from adplatform.settings import Settings
from ml import registry
from tests.ui.conftest import CtrRun, Page

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOTEBOOK = "ctr_explore.ipynb"
CHALLENGER = "ctr_challenger.ipynb"
OUTPUT = "//div[contains(@class,'jp-OutputArea-output')]"
# The number of code cells once each shows an execution count ("[3]:"), not "[ ]:" or "[*]:".
ALL_CELLS_RAN = """
const prompts = [...document.querySelectorAll(".jp-Notebook .jp-CodeCell .jp-InputPrompt")]
    .map(prompt => prompt.textContent.trim());
return prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p)) ? prompts.length : 0;
"""


@pytest.fixture
def hub(jupyterhub_server: Settings, local_stack: LocalStack) -> JupyterHubServer:
    service = local_stack.services["jupyterhub"]
    assert isinstance(service, JupyterHubServer)
    return service


def log_in(page: Page, hub: JupyterHubServer, user: str, password: str) -> None:
    page.browser.open(f"{hub.url}/hub/login")
    page.element("//input[@name='username']").send_keys(user)
    field = page.element("//input[@name='password']")
    field.send_keys(password)
    field.submit()


def test_a_wrong_password_or_an_unknown_user_is_refused(hub: JupyterHubServer, page: Page):
    log_in(page, hub, "someone-else", hub.password())
    page.element("//*[normalize-space()='Invalid username or password']")
    log_in(page, hub, JUPYTERHUB_USER, hub.password() + "x")
    page.element("//*[normalize-space()='Invalid username or password']")
    assert "/hub/login" in page.driver.current_url
    page.screenshot("jupyterhub-login-refused.png")


def test_the_ctr_notebook_runs_in_jupyterlab_and_links_to_its_mlflow_run(
    hub: JupyterHubServer, gold: Settings, ctr_run: CtrRun, page: Page
):
    log_in(page, hub, JUPYTERHUB_USER, hub.password())
    # Logging in starts the user's server; the hub's spawn page hands over to JupyterLab.
    listing = "//span[@class='jp-DirListing-itemText']/span[normalize-space()='{}']"
    ActionChains(page.driver).double_click(page.element(listing.format("notebooks"))).perform()
    ActionChains(page.driver).double_click(page.element(listing.format(NOTEBOOK))).perform()
    page.element("//h1[starts-with(., 'CTR model: the training set and the MLflow runs')]")
    assert page.driver.current_url.startswith(f"{hub.url}/user/{JUPYTERHUB_USER}/lab")

    code_cells = run_all_cells(page)

    # What a data scientist sees: the training window, a table, plots and the run link.
    page.element(f"{OUTPUT}//*[contains(., '2026-03-02..2026-03-05 (4 partitions')]")
    page.element(f"{OUTPUT}//table")
    plot = page.element(f"{OUTPUT}//img")
    page.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", plot)
    page.screenshot("jupyterhub-ctr-notebook.png")

    # What the browser ran, saved by JupyterLab into the user's copy: no cell failed.
    ActionChains(page.driver).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()
    saved_copy = hub.user_home() / "notebooks" / NOTEBOOK
    notebook = page.until(lambda _: saved_run(saved_copy, code_cells))
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert [o for o in outputs if o["output_type"] == "error"] == []
    assert any("image/png" in o.get("data", {}) for o in outputs)

    link = page.element(f"{OUTPUT}//p[starts-with(., 'Newest run in the MLflow UI')]/a")
    # The whole cell: the query, the run link and the runs side by side.
    page.driver.execute_script(
        "arguments[0].closest('.jp-Cell').scrollIntoView({block: 'start'})", link
    )
    page.screenshot("jupyterhub-mlflow-runs.png")
    run_name = link.text
    notebook_tab = page.driver.current_window_handle
    link.click()  # JupyterLab opens links from outputs in a new tab
    page.until(lambda driver: len(driver.window_handles) == 2)
    page.driver.switch_to.window(next(h for h in page.driver.window_handles if h != notebook_tab))
    try:
        page.element(f"//h2[normalize-space()='{run_name}']")
        assert page.driver.current_url.startswith(gold.mlflow_tracking_uri)
    finally:
        page.driver.close()
        page.driver.switch_to.window(notebook_tab)


def test_a_challenger_trained_in_jupyterlab_is_logged_and_not_promoted(
    hub: JupyterHubServer, gold: Settings, ctr_run: CtrRun, page: Page
):
    client = registry.connect(gold)
    champion = registry.aliased_version(client, registry.CHAMPION)
    # A link to a notebook, as a colleague would send it: the hub asks for the password first
    # when the browser is not logged in. ?reset: only this notebook open, whatever ran before.
    page.browser.open(f"{hub.url}/user/{JUPYTERHUB_USER}/lab/tree/notebooks/{CHALLENGER}?reset")
    heading = "//h1[starts-with(., 'A challenger: change one thing, log it, ask the gate')]"
    login = "//input[@name='username']"
    page.until(lambda driver: driver.find_elements("xpath", f"{heading} | {login}"))
    if page.driver.find_elements("xpath", login):
        page.element(login).send_keys(JUPYTERHUB_USER)
        page.element("//input[@name='password']").send_keys(hub.password() + Keys.ENTER)
    page.element(heading)

    run_all_cells(page)
    logged = page.element(f"{OUTPUT}//p[starts-with(., 'Logged run')]/a")
    decision = page.element(f"{OUTPUT}//pre[contains(., 'the gate would')]")
    page.driver.execute_script("arguments[0].scrollIntoView({block: 'end'})", decision)
    page.screenshot("jupyterhub-challenger.png")

    challenger = registry.aliased_version(client, registry.CHALLENGER)
    run = client.get_run(challenger.run_id)
    assert logged.text == run.info.run_name
    assert run.data.params["num_leaves"] == "7"
    assert decision.text.startswith(("the gate would promote it", "the gate would reject it"))
    after = registry.aliased_version(client, registry.CHAMPION)
    assert (after and after.version) == (champion and champion.version)


def run_all_cells(page: Page) -> int:
    """Run → Run All Cells once the notebook's kernel is ready, as a user would; the number of
    code cells once all have run. (Run All asked of a kernel still starting ran nothing.)"""
    page.element("//span[contains(@class,'jp-StatusBar-TextItem')][contains(., ' | Idle')]")
    page.click("//div[@class='lm-MenuBar-itemLabel'][normalize-space()='Run']")
    page.click("//div[contains(@class,'lm-Menu-itemLabel')][normalize-space()='Run All Cells']")
    return int(page.until(lambda driver: driver.execute_script(ALL_CELLS_RAN)))


def saved_run(path: Path, code_cells: int) -> nbformat.NotebookNode | None:
    """The notebook at ``path`` once it was saved with every code cell executed."""
    try:
        notebook = nbformat.reads(path.read_text(), as_version=4)
    except (json.JSONDecodeError, nbformat.reader.NotJSONError):
        return None  # caught mid-write
    counts = [cell.execution_count for cell in notebook.cells if cell.cell_type == "code"]
    return notebook if len(counts) == code_cells and all(counts) else None
