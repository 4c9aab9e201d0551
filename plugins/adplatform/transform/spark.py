"""Spark configuration in one place: the jobs, the DAG's spark-submit and the tests share it.

Cheap to import (the DAG file reads ``spark_conf``); pyspark and pyarrow are imported only by
the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adplatform.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession
    from pyspark.sql.types import DataType, StructType

    from adplatform.lakehouse.tables import Table


def spark_conf(settings: Settings) -> dict[str, str]:
    """Resources and semantics for every transform job (spark-submit --conf, or a session)."""
    return {
        "spark.driver.memory": settings.spark_driver_memory,
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
        "spark.ui.showConsoleProgress": "false",
        # The UI of every local job would take a port on a shared machine.
        "spark.ui.enabled": str(settings.profile == "production").lower(),
    }


def spark_session(settings: Settings, app_name: str) -> SparkSession:
    """The session of a job (under spark-submit the master comes from its command line)."""
    from pyspark.sql import SparkSession

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
