"""The MLflow UI of the session's real MLflow server, in headless Chromium: a data scientist
finds the CTR experiment, opens a real training run of the project's pipeline, reads its
metrics and looks at its ROC plot."""

from __future__ import annotations

import pytest

from tests.ui.conftest import CtrRun, Page

pytestmark = [pytest.mark.integration, pytest.mark.slow]

METRIC_ROWS = "//*[@role='row'][*[@role='cell']]"
DISMISS_ASSISTANT = """
localStorage.setItem("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true");
localStorage.setItem("mlflow.assistant.panelOpen_v1", "false");
"""
IMAGE_LOADED = "return arguments[0].complete && arguments[0].naturalWidth > 0"


def test_the_ctr_run_shows_its_metrics_and_plots(mlflow_server, ctr_run: CtrRun, page: Page):
    page.browser.open(mlflow_server.mlflow_tracking_uri)
    # As a returning user: the assistant panel MLflow opens on a first visit would cover a
    # third of every picture.
    page.driver.execute_script(DISMISS_ASSISTANT)
    page.driver.refresh()
    page.click("//*[@role='button'][normalize-space()='Model training']")
    page.click("//a[normalize-space()='ctr_model']")
    # This run's link: the JupyterHub test's challenger notebook logs a run of the same window
    # (so of the same name) into the session's server.
    run_link = (
        f"//a[normalize-space()='{ctr_run.run_name}'][contains(@href, '/runs/{ctr_run.run_id}')]"
    )
    page.click(run_link)

    page.element(f"//h2[normalize-space()='{ctr_run.run_name}']")
    page.element("//*[@role='cell'][normalize-space()='holdout_auc']")
    shown = {}
    for row in page.driver.find_elements("xpath", METRIC_ROWS):
        name, value, *_ = (c.get_attribute("textContent") for c in row.find_elements("xpath", "*"))
        if name in ctr_run.metrics:
            shown[name] = float(value)
    assert shown == pytest.approx(ctr_run.metrics)
    page.screenshot("mlflow-ctr-run.png", height=1600)

    page.click("//button[@role='tab'][normalize-space()='Artifacts']")
    page.click("//*[@data-testid='artifact-tree-node'][@aria-label='plots']")
    page.click("//*[@data-testid='artifact-tree-node'][@aria-label='roc.png']")
    plot = page.element("//img[@alt='plots/roc.png']")
    page.until(lambda driver: driver.execute_script(IMAGE_LOADED, plot))
    page.screenshot("mlflow-ctr-roc.png")
