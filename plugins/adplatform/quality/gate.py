"""Running a quality gate with Great Expectations 1.x, and its Data Docs.

A gate is a list of checks, each a pandas frame and the expectations it must meet. Every check
is validated by a Checkpoint whose UpdateDataDocsAction renders the result into one Data Docs
site under the data root (``<data_root>/quality/data_docs/index.html``); validation results are
kept beside it, so the index lists every gate of every run. The context itself is ephemeral:
nothing else is written, and concurrent gates cannot race on a shared configuration file.
Great Expectations keeps the current context in one process-wide project manager, so the gates
of one process (the triggerer runs those of concurrent runs in threads) validate in turn.

Importing this module costs seconds (Great Expectations); import it inside tasks only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.expectations import Expectation

from adplatform.settings import Settings

log = logging.getLogger(__name__)
SITE = "lakehouse"
_ONE_CONTEXT_AT_A_TIME = threading.Lock()


class QualityGateFailed(RuntimeError):
    """A gate's expectations failed; the message lists them and the Data Docs page to read."""


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "silver_events"; the Data Docs page of the check is named after it
    frame: pd.DataFrame
    expectations: Sequence[Expectation]


@dataclass
class GateReport:
    gate: str
    index: str  # the Data Docs site
    pages: dict[str, str] = field(default_factory=dict)  # check -> its validation page
    failures: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.failures

    def raise_for_failures(self) -> None:
        if self.failures:
            pages = "\n".join(f"  {name}: {url}" for name, url in self.pages.items())
            raise QualityGateFailed(
                f"quality gate {self.gate} failed {len(self.failures)} expectation(s):\n  "
                + "\n  ".join(self.failures)
                + f"\nData Docs:\n{pages}"
            )


def _context(settings: Settings) -> Any:
    root = settings.quality_dir
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={
            SITE: {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(root / "data_docs"),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    config.stores["validation_results_store"] = {
        "class_name": "ValidationResultsStore",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(root / "validations"),
        },
    }
    return gx.get_context(project_config=config)


def _describe(result: Any) -> str:
    config = result.expectation_config
    arguments = ", ".join(
        f"{k}={v!r}" for k, v in config.kwargs.items() if k not in ("batch_id", "result_format")
    )
    outcome = result.result or {}
    if "unexpected_count" in outcome:
        detail = (
            f"{outcome['unexpected_count']} unexpected of {outcome.get('element_count')}, "
            f"e.g. {outcome.get('partial_unexpected_list', [])[:5]}"
        )
    else:
        detail = f"observed {outcome.get('observed_value')!r}"
    return f"{config.type}({arguments}): {detail}"


def run_gate(settings: Settings, gate: str, run_name: str, checks: Sequence[Check]) -> GateReport:
    """Validate every check, render Data Docs, log where they are, and return the outcome."""
    with _ONE_CONTEXT_AT_A_TIME:
        return _run_gate(settings, gate, run_name, checks)


def _run_gate(settings: Settings, gate: str, run_name: str, checks: Sequence[Check]) -> GateReport:
    context = _context(settings)
    source = context.data_sources.add_pandas(gate)
    docs_index = context.get_docs_sites_urls(site_name=SITE, only_if_exists=False)[0]["site_url"]
    report = GateReport(gate=gate, index=docs_index)
    for check in checks:
        batch = source.add_dataframe_asset(check.name).add_batch_definition_whole_dataframe(
            check.name
        )
        suite = context.suites.add(
            gx.ExpectationSuite(name=f"{gate}.{check.name}", expectations=list(check.expectations))
        )
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{gate}.{check.name}", data=batch, suite=suite)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{gate}.{check.name}",
                validation_definitions=[validation],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[SITE])],
                result_format="SUMMARY",
            )
        )
        outcome = checkpoint.run(
            batch_parameters={"dataframe": check.frame}, run_id=RunIdentifier(run_name=run_name)
        )
        for identifier, validation_result in outcome.run_results.items():
            urls = context.get_docs_sites_urls(resource_identifier=identifier, site_name=SITE)
            report.pages[check.name] = urls[0]["site_url"]
            report.failures += [
                f"{check.name}: {_describe(r)}" for r in validation_result.results if not r.success
            ]
        log.info(
            "%s.%s: %d rows, %s: %s",
            gate,
            check.name,
            len(check.frame),
            "passed" if outcome.success else "FAILED",
            report.pages.get(check.name),
        )
    log.info("Data Docs for gate %s: %s", gate, report.index)
    return report
