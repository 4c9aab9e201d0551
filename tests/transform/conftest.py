"""One local SparkSession for the whole test session (a JVM start costs ~15 s)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from adplatform.settings import load_settings
from adplatform.transform.spark import spark_conf


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[2]").appName("adplatform-tests")
    for key, value in spark_conf(load_settings()).items():
        builder = builder.config(key, value)
    session = (
        builder.config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    # py4j logs from finalizers at interpreter exit, after pytest has closed the streams.
    logging.getLogger("py4j").setLevel(logging.WARNING)
