"""One way to reach ClickHouse: clickhouse-connect, configured by one DSN.

``chdb:///path`` runs the embedded engine (chDB) in this process: the local default.
``http(s)://host:port`` talks to a ClickHouse server with a user and password: production.
Migrations, the publish and the reports all open their client with :func:`clickhouse_client`,
on the connection ``adplatform.connections`` resolves.

chDB allows one process per data directory: its engine holds an exclusive lock on
``<path>/status`` (which records the owner's PID) while any client in that process is open, and
an engine in a second process fails to start. So a client is opened for one unit of work and
closed right after, Airflow runs ClickHouse tasks in the one-slot ``clickhouse`` pool, and a
process that finds the directory busy waits for a while, then fails naming the holder.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from adplatform.connections import Source, clickhouse_target

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from clickhouse_connect.driver.query import QueryResult

log = logging.getLogger(__name__)

DATABASE = "adplatform"
CHDB_BUSY_WAIT_SECONDS = 60.0


class ClickHouseError(RuntimeError):
    """An expected ClickHouse failure; the message names the problem and the fix."""


def redact(dsn: str) -> str:
    """The DSN without any user:password part, for messages and logs."""
    return re.sub(r"//[^/@]*@", "//***@", dsn)


@contextmanager
def open_client(dsn: str, user: str = "default", password: str = "") -> Iterator[Client]:
    """A clickhouse-connect client for ``dsn``, closed (and chDB's lock released) on exit."""
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import OperationalError

    parsed = urlparse(dsn)
    if parsed.scheme == "chdb":
        if parsed.netloc or not parsed.path.startswith("/"):
            raise ClickHouseError(
                f"ClickHouse DSN {redact(dsn)!r} names no absolute directory: "
                "use chdb:///absolute/path (note the three slashes)"
            )
        client = _open_chdb(Path(parsed.path))
    elif parsed.scheme in ("http", "https"):
        try:
            client = clickhouse_connect.get_client(dsn=dsn, username=user, password=password)
        except OperationalError as error:
            raise ClickHouseError(
                f"cannot reach ClickHouse at {redact(dsn)}: {error}; check the ClickHouse "
                "connection (Airflow: clickhouse_default; the CLI: ADP_CLICKHOUSE_DSN, "
                "ADP_CLICKHOUSE_USER and ADP_CLICKHOUSE_PASSWORD)"
            ) from None
    else:
        raise ClickHouseError(
            f"unsupported ClickHouse DSN {redact(dsn)!r}: use chdb:///path for the embedded "
            "engine or http(s)://host:port for a server"
        )
    try:
        yield client
    finally:
        client.close()


def clickhouse_client(source: Source) -> AbstractContextManager[Client]:
    """:func:`open_client` for the ClickHouse connection: the settings' (outside Airflow), or
    in an Airflow task the connection it names (``"clickhouse_default"``)."""
    target = clickhouse_target(source)
    return open_client(target.dsn, target.user, target.password)


def lock_holder(path: Path) -> int | None:
    """The PID of the process whose chDB engine holds ``path``, or None when it is free."""
    try:
        status = (path / "status").open("rb")
    except FileNotFoundError:
        return None
    with status:
        try:
            fcntl.flock(status, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            found = re.search(rb"PID:\s*(\d+)", status.read())
            return int(found.group(1)) if found else -1
        fcntl.flock(status, fcntl.LOCK_UN)
        return None


def _open_chdb(path: Path) -> Client:
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import ProgrammingError

    path.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + CHDB_BUSY_WAIT_SECONDS
    retried_free = False
    while True:
        try:
            return clickhouse_connect.get_client(dsn=f"chdb://{path}")
        except ProgrammingError as error:
            if "already initialized" in str(error):
                raise ClickHouseError(
                    f"this process already has another chDB data directory open, and chDB "
                    f"allows one per process: close its clients before opening {path}"
                ) from None
            holder = lock_holder(path)
            if holder in (None, os.getpid()):
                if retried_free:  # not a lock conflict: a broken directory or engine
                    raise ClickHouseError(
                        f"cannot open the embedded ClickHouse at {path}: {error}"
                    ) from None
                retried_free = True  # the holder may just have exited: try once more
                continue
            if time.monotonic() > deadline:
                raise ClickHouseError(
                    f"the embedded ClickHouse at {path} is in use by process {holder}, and chDB "
                    f"allows one process per data directory (waited "
                    f"{CHDB_BUSY_WAIT_SECONDS:.0f}s): let it finish (Airflow runs ClickHouse "
                    "tasks one at a time, in the 'clickhouse' pool), or point ADP_CLICKHOUSE_DSN at a "
                    "ClickHouse server"
                ) from None
            log.info("waiting for process %s to release the chDB directory %s", holder, path)
            time.sleep(0.5)


def read_only_query(client: Client, sql: str, parameters: dict[str, str]) -> QueryResult:
    """An analyst's ad-hoc query: values bound server-side (``{name:Type}`` in the SQL), and
    refused by ClickHouse itself (``readonly=1``) if it would change anything."""
    from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError

    try:
        return client.query(sql, parameters=parameters, settings={"readonly": 1})
    except DriverError as error:
        reason = str(error).strip().splitlines()[0]
        raise ClickHouseError(
            f"query refused: {reason} (queries run read-only; bind values as {{name:Type}} "
            "with --param name=value)"
        ) from None
