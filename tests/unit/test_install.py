"""The package as a user installs it: built from a copy of its sources (not the editable
checkout) into a folder of its own, and run from outside the checkout. The CLI starts, the files
it ships (report SQL, ClickHouse migrations, the Spark jobs) are read from the installed package,
and what lives only in the checkout (dags/, infra/, helm_values/) is refused with a message naming
ADP_REPO_ROOT until that setting points at it."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adplatform.settings import REPO_ROOT

SOURCES = ("pyproject.toml", "README.md", "plugins", "ml", "spark_jobs")
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(
                REPO_ROOT / name,
                source / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
            )
        else:
            shutil.copy(REPO_ROOT / name, source / name)
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            BIN / "uv",
            "pip",
            "install",
            "--quiet",
            "--python",
            sys.executable,
            "--no-deps",
            source,
            "--target",
            target,
        ],
        check=True,
        timeout=600,
    )
    return target


def run(installed: Path, cwd: Path, *argv: str | Path, **env: str) -> subprocess.CompletedProcess:
    """``argv`` with the installed package first on the path, in a clean environment (no ADP_*
    variable but ``env``'s), from ``cwd``."""
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env={
            "PATH": f"{BIN}:/usr/bin:/bin",
            "HOME": str(cwd),
            "PYTHONPATH": str(installed),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_installed_cli_runs_outside_the_checkout_on_its_own_files(installed, tmp_path):
    where = run(
        installed, tmp_path, sys.executable, "-c", "import adplatform; print(adplatform.__file__)"
    )
    assert where.stdout.strip() == str(installed / "adplatform" / "__init__.py"), where.stderr

    help_ = run(installed, tmp_path, installed / "bin" / "adplatform", "--help")
    assert help_.returncode == 0, help_.stderr
    assert "Run and inspect the adplatform" in help_.stdout

    # Every migration's SQL, read from the installed package, applied to an embedded ClickHouse.
    adplatform = installed / "bin" / "adplatform"
    data_root = str(tmp_path / "data")
    migrated = run(
        installed, tmp_path, adplatform, "clickhouse", "migrate", ADP_DATA_ROOT=data_root
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "0004_roles" in migrated.stdout

    script = textwrap.dedent("""
        from adplatform.reporting.reports import REPORTS
        from adplatform.orchestration.operators import SPARK_JOBS
        print(sum(len(report.sql) > 0 for report in REPORTS.values()), len(REPORTS))
        print(SPARK_JOBS / "silver_to_gold.py", (SPARK_JOBS / "silver_to_gold.py").is_file())
    """)
    shipped = run(installed, tmp_path, sys.executable, "-c", script)
    assert shipped.returncode == 0, shipped.stderr
    reports, jobs = shipped.stdout.splitlines()
    count = reports.split()[1]
    assert reports == f"{count} {count}" and int(count) >= 6
    assert jobs == f"{installed / 'spark_jobs' / 'silver_to_gold.py'} True"


def test_the_checkout_is_refused_clearly_until_adp_repo_root_names_it(installed, tmp_path):
    script = textwrap.dedent("""
        from adplatform.provisioning.manifest import ManifestError, load_manifest
        from adplatform.settings import REPO_ROOT, SettingsError, repo_path
        for check in (lambda: repo_path("dags"), lambda: load_manifest(with_values=False)):
            try:
                print("found", check())
            except (SettingsError, ManifestError) as error:
                print("refused", error)
    """)
    outside = run(installed, tmp_path, sys.executable, "-c", script)
    assert outside.returncode == 0, outside.stderr
    dags, manifest = outside.stdout.splitlines()
    assert dags == (
        f"refused dags not found in {tmp_path}: it is part of the adplatform checkout, not of the "
        "installed package; run from the checkout or set ADP_REPO_ROOT to it"
    )
    assert manifest.startswith("refused ") and "set ADP_REPO_ROOT to it" in manifest

    named = run(installed, tmp_path, sys.executable, "-c", script, ADP_REPO_ROOT=str(REPO_ROOT))
    assert named.returncode == 0, named.stderr
    dags, manifest = named.stdout.splitlines()
    assert dags == f"found {REPO_ROOT / 'dags'}"
    assert manifest.startswith("found ") and "local" in manifest
