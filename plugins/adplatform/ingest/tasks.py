"""What the ``ad_events_ingest`` DAG runs: one bounded micro-batch, configured by the Airflow
connection it names (a Kafka connection: its extra holds the librdkafka settings).
"""

from __future__ import annotations

from typing import Any

from adplatform.connections import kafka_client_config
from adplatform.ingest.worker import IngestOptions, IngestWorker
from adplatform.settings import get_settings


def ingest_micro_batch(kafka_config_id: str, max_events: int, max_seconds: float) -> dict[str, Any]:
    """Ingest until caught up or a limit is reached; the run's metrics, JSON-ready."""
    settings = get_settings()
    options = IngestOptions.from_settings(
        settings, max_events=max_events, max_seconds=max_seconds, until_caught_up=True
    )
    worker = IngestWorker(settings, options, kafka_client_config(kafka_config_id))
    return worker.run().as_dict()
