"""The JupyterHub notebooks run top to bottom against the session's lakehouse and MLflow."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from adplatform.settings import REPO_ROOT
from ml import registry

pytestmark = pytest.mark.integration

NOTEBOOKS = REPO_ROOT / "ml" / "notebooks"


def execute(name: str, tmp_path: Path) -> tuple[nbformat.NotebookNode, str]:
    """The notebook run in a fresh kernel, and the text of its outputs; no cell failed."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    # The kernel inherits this process's environment: the session's ADP_* settings.
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert [o for o in outputs if o["output_type"] == "error"] == []
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/markdown", "") for o in outputs)
    return notebook, text


def test_the_exploration_notebook_runs_top_to_bottom(gold, mlflow_server, stack_env, tmp_path):
    _, text = execute("ctr_explore.ipynb", tmp_path)
    assert "2026-03-02..2026-03-05 (4 partitions" in text
    assert f"file('{gold.lake_root}/gold/ctr_training" in text


def test_the_challenger_notebook_logs_a_run_and_promotes_nothing(
    gold, mlflow_server, stack_env, tmp_path
):
    client = registry.connect(gold)
    champion_before = registry.aliased_version(client, registry.CHAMPION)

    _, text = execute("ctr_challenger.ipynb", tmp_path)

    challenger = registry.aliased_version(client, registry.CHALLENGER)
    run = client.get_run(challenger.run_id)
    assert run.data.params["num_leaves"] == "7"
    assert run.data.tags["mlflow.note.content"] == "challenger from a notebook: {'num_leaves': 7}"
    assert f"Logged run [{run.info.run_name}]" in text
    assert "the gate would promote it" in text or "the gate would reject it" in text
    champion_after = registry.aliased_version(client, registry.CHAMPION)
    assert (champion_after and champion_after.version) == (
        champion_before and champion_before.version
    )
    assert not (gold.data_root / "ml" / "work" / "notebook-challenger").exists()
