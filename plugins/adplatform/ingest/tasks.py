"""What the ``ad_events_ingest`` DAG runs: one bounded micro-batch, configured by the Kafka
provider's connection (its extra holds the librdkafka settings, as the provider's hooks read it).
"""

from __future__ import annotations

from typing import Any

from adplatform.ingest.worker import IngestOptions, IngestWorker
from adplatform.settings import get_settings


def kafka_client_config(kafka_config_id: str) -> dict[str, Any]:
    """The librdkafka config of an Airflow Kafka connection, resolved by the provider's hook
    (callback allow-list, managed-cloud OAuth), exactly as its own consumers get it."""
    from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook

    class _ClientConfig(KafkaBaseHook):
        def _get_client(self, config: dict[str, Any]) -> dict[str, Any]:
            return config

    config: dict[str, Any] = _ClientConfig(kafka_config_id=kafka_config_id).get_conn
    return config


def ingest_micro_batch(kafka_config_id: str, max_events: int, max_seconds: float) -> dict[str, Any]:
    """Ingest until caught up or a limit is reached; the run's metrics, JSON-ready."""
    settings = get_settings()
    options = IngestOptions.from_settings(
        settings, max_events=max_events, max_seconds=max_seconds, until_caught_up=True
    )
    worker = IngestWorker(settings, options, client_config=kafka_client_config(kafka_config_id))
    return worker.run().as_dict()
