"""Spark configuration and sessions in one place: the Spark Connect server and its clients,
spark-submit jobs, the benchmark and the tests share them.

Cheap to import; pyspark and pyarrow are imported only by the functions that need them.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from adplatform.connections import spark_connect_url
from adplatform.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession
    from pyspark.sql.types import DataType, StructType

    from adplatform.lakehouse.tables import Table


def session_conf(settings: Settings) -> dict[str, str]:
    """The SQL semantics and tuning every transform session needs, wherever its server runs:
    a Spark Connect client sets them on its session."""
    return {
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        # The shuffle partitions are sized to the cores already; AQE's coalescing would pack
        # 8 equal partitions into 3 tasks on 2 cores and leave one core idle for a third.
        "spark.sql.adaptive.coalescePartitions.enabled": "false",
        # The rollups have millions of groups: the 65k-entry first-level hash map only adds a
        # failed probe per row before the real one (a quarter of the aggregation's time).
        "spark.sql.codegen.aggregate.map.twolevel.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        # Parquet timestamps as the contracts declare them (ms, UTC), not legacy INT96.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MILLIS",
        "spark.sql.files.maxRecordsPerFile": "5000000",
    }


def spark_conf(settings: Settings) -> dict[str, str]:
    """Everything a Spark application of the transform starts with: the Spark Connect server's
    command line, a spark-submit job's ``--conf``, a local session."""
    return {
        "spark.driver.memory": settings.spark_driver_memory,
        **session_conf(settings),
        "spark.ui.showConsoleProgress": "false",
        # The UI of every local job would take a port on a shared machine.
        "spark.ui.enabled": str(settings.profile == "production").lower(),
    }


class SparkConnectUnavailable(RuntimeError):
    """The Spark Connect server does not answer; the message names its URL and the fix."""


def connect_session(settings: Settings, url: str | None = None) -> SparkSession:
    """A Spark Connect session (no JVM in this process) on ``url`` (an Airflow task passes the
    one its connection resolves to; default: the settings' server), with the transform's
    session configuration.

    The client retries an unreachable server for minutes before it gives up, so a server that
    is down is refused at once, by its URL, before any job work starts."""
    from pyspark.sql import SparkSession

    url = url or spark_connect_url(settings)
    address = urlparse(url)
    try:
        socket.create_connection((address.hostname, address.port or 15002), timeout=5).close()
    except OSError as error:
        raise SparkConnectUnavailable(
            f"no Spark Connect server at {url} ({error.strerror or error}): start the local "
            "stack with `make up`, or point ADP_SPARK_CONNECT_URL (Airflow: the "
            "spark_connect_default connection) at a running server"
        ) from None
    builder = SparkSession.builder.remote(url)
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    # A new session, never the process's default one: getOrCreate would hand back a session
    # of another server (or one another caller stops).
    return builder.create()


def spark_session(settings: Settings, app_name: str) -> SparkSession:
    """The session of a spark-submit job (the master comes from spark-submit's command line)."""
    from pyspark.sql import SparkSession

    # pyspark marks a process that opened a Spark Connect session (connect_session) with this
    # variable, and its children inherit it: a job submitted from such a process (a test, or
    # `airflow dags test`) would otherwise look for a Spark Connect server instead of the JVM
    # spark-submit started for it.
    os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)

    builder = SparkSession.builder.appName(app_name)
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


def _spark_type(arrow_type: pa.DataType) -> DataType:
    import pyarrow as pa
    from pyspark.sql import types as T

    if pa.types.is_timestamp(arrow_type):
        return T.TimestampType()
    simple: dict[pa.DataType, DataType] = {
        pa.string(): T.StringType(),
        pa.int64(): T.LongType(),
        pa.int32(): T.IntegerType(),
        pa.int8(): T.ByteType(),
        pa.float64(): T.DoubleType(),
        pa.binary(): T.BinaryType(),
    }
    return simple[arrow_type]


def spark_schema(table: Table, *, with_partitions: bool = True) -> StructType:
    """A table contract as a Spark schema (partition columns last, as Spark reads them)."""
    from pyspark.sql import types as T

    from adplatform.lakehouse.tables import PARTITION_TYPES

    fields = [T.StructField(f.name, _spark_type(f.type), f.nullable) for f in table.schema]
    if with_partitions:
        fields += [
            T.StructField(name, _spark_type(PARTITION_TYPES[name]), False)
            for name in table.partitioning
        ]
    return T.StructType(fields)
