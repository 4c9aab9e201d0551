"""The runtime never imports the tests' synthetic data, ``adplatform.testing``: not the package,
``ml/``, the Spark jobs nor the DAG files, at module level or inside a function (``make lint``'s
import-linter contracts say the same for the packages; this also covers the DAG folder)."""

import ast
import subprocess
import sys
import textwrap

import grimp

from adplatform.settings import REPO_ROOT

TESTING = "adplatform.testing"
DAGS_FOLDER = REPO_ROOT / "dags"


def test_no_runtime_module_imports_the_testing_package():
    graph = grimp.build_graph("adplatform", "ml", "spark_jobs")
    # The graph holds imports made inside functions too (the CLI imports the demo in one).
    assert graph.direct_import_exists(importer="adplatform.cli", imported="adplatform.demo")
    importers = graph.find_downstream_modules(TESTING, as_package=True)
    assert {m for m in importers if not m.startswith(f"{TESTING}.")} == set()


def test_no_dag_file_imports_the_testing_package():
    for path in sorted(DAGS_FOLDER.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n == TESTING or n.startswith(f"{TESTING}.") for n in names), path


def test_the_cli_and_dag_parsing_load_no_testing_module():
    script = textwrap.dedent(f"""
        import sys
        import adplatform.cli
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(DAGS_FOLDER)!r}, safe_mode=False)
        assert not bag.import_errors, bag.import_errors
        print("loaded:", *(m for m in sys.modules if m.startswith({TESTING!r})))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    assert result.stdout.splitlines()[-1] == "loaded:"
