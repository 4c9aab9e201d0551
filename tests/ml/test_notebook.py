"""The JupyterHub notebook runs top to bottom against the session's lakehouse and MLflow."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from adplatform.settings import REPO_ROOT

pytestmark = pytest.mark.integration

NOTEBOOK = REPO_ROOT / "ml" / "notebooks" / "ctr_explore.ipynb"


def test_the_notebook_runs_top_to_bottom(gold, mlflow_server, stack_env, tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel inherits this process's environment: the session's ADP_* settings.
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = [
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    ]
    text = "".join(outputs)
    assert "2026-03-02..2026-03-05 (4 partitions" in text
    assert f"file('{gold.lake_root}/gold/ctr_training" in text
    assert not any(
        o.get("output_type") == "error" for c in notebook.cells for o in c.get("outputs", [])
    )
