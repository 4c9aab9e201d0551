"""
### Ad events → Bronze, exactly once (micro-batches)

Whenever the events topic has a backlog, one bounded micro-batch: the ingest worker joins the
consumer group, reads the events topic from where the commit log ends, validates every message,
writes accepted events to **Bronze** (Parquet, partitioned by event date, hour and type) and bad
ones to the **quarantine** table and the dead-letter topic, and stops once it has read the topic
up to where it ended when the run started (what arrives meanwhile is the next run's: under steady
traffic a run never waits for it) or reached `max_events` / `max_seconds`. The Bronze and
quarantine Assets are emitted only when the run wrote rows to them, so Silver runs on new data, not
on every tick.

Kafka settings come from the `kafka_default` connection only (its extra is the librdkafka
config, as the Kafka provider's hooks read it), never from the `ADP_KAFKA_*` settings. The metrics (consumed = accepted + quarantined, lag per
partition, rate) are the `ingest_micro_batch` XCom.

**Event-driven.** The DAG runs on the `ad_events_topic` Asset, whose watcher in the triggerer
(`adplatform.orchestration.triggers.TopicBacklogTrigger`) compares the topic's end offsets with the
consumer group's every few seconds and fires when messages wait: a new message starts ingesting
within seconds, steady traffic gets back-to-back runs (`max_active_runs=1` queues one next run),
and a quiet topic costs no runs. It reads offsets, not messages, unlike the Kafka provider's
message-queue trigger, which fires one asset event per message. A run every ten minutes is the
safety net should the triggerer be down.

**Owner:** data-engineering.

#### Triage
- *Kafka unreachable / topic missing*: the task log names the bootstrap servers; check the
  broker (`adplatform stack status` locally) and the `kafka_default` connection; create topics
  with `adplatform topics`.
- *Lag keeps growing*: `adplatform ingest status` shows lag per partition; raise `max_events`,
  or run more workers in the group (`adplatform ingest run`, same group id).
- *No runs although messages wait*: the triggerer runs the topic watcher (`airflow triggerer`
  must be healthy: `adplatform stack status` locally); its log says why it cannot read the
  offsets. The ten-minute safety-net runs keep ingesting meanwhile.
- *Commit log ahead of the topic*: the topic was re-created; the error names the directory to
  move aside.
- A failed or killed run is safe to retry: the next run resumes from the commit log and
  finishes publishing whatever the stopped one committed; nothing is lost or duplicated.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param, task
from airflow.sdk.exceptions import AirflowSkipException

from adplatform.orchestration import Owner, Tag, dag_defaults
from adplatform.orchestration.assets import BRONZE, EVENTS_TOPIC, QUARANTINE

KAFKA_CONNECTION = "kafka_default"

with DAG(
    dag_id="ad_events_ingest",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/10 * * * *", timezone="UTC"), assets=EVENTS_TOPIC
    ),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    max_active_runs=1,
    params={
        "max_events": Param(
            2_000_000, type="integer", minimum=1, description="Stop after reading this many."
        ),
        "max_seconds": Param(
            90, type="number", minimum=5, description="Stop after this long (seconds)."
        ),
    },
    doc_md=__doc__,
    **dag_defaults(
        Owner.DATA_ENGINEERING,
        Tag.LAKEHOUSE,
        Tag.INGEST,
        retries=3,
        execution_timeout=timedelta(minutes=10),
    ),
):

    @task
    def ingest_micro_batch(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from adplatform.ingest.tasks import ingest_micro_batch as run

        assert params is not None
        return run(KAFKA_CONNECTION, int(params["max_events"]), float(params["max_seconds"]))

    @task(outlets=[BRONZE])
    def bronze_updated(metrics: dict[str, Any], outlet_events: Any = None) -> int:
        if not metrics["accepted"]:
            raise AirflowSkipException("no new Bronze rows")
        outlet_events[BRONZE].extra = {
            "rows": metrics["accepted"],
            "committed_end": metrics["committed_end"],
        }
        return int(metrics["accepted"])

    @task(outlets=[QUARANTINE])
    def quarantine_updated(metrics: dict[str, Any], outlet_events: Any = None) -> int:
        if not metrics["quarantined"]:
            raise AirflowSkipException("nothing quarantined")
        outlet_events[QUARANTINE].extra = {
            "rows": metrics["quarantined"],
            "by_reason": metrics["by_reason"],
        }
        return int(metrics["quarantined"])

    metrics = ingest_micro_batch()
    bronze_updated(metrics)
    quarantine_updated(metrics)
