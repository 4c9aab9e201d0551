"""One Spark Connect session for the whole test session, on the session's Spark Connect server:
the transform runs as the DAG runs it, as a client (the server's JVM starts once, ~20 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adplatform.settings import Settings
from adplatform.transform.spark import connect_session


@pytest.fixture(scope="session")
def spark(spark_connect: Settings) -> Iterator[object]:
    session = connect_session(spark_connect)
    yield session
    session.stop()
