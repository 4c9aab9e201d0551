"""An Airflow hook for ClickHouse through clickhouse-connect: no provider offers one.

The connection (``clickhouse_default``) carries the DSN in its extra (``{"dsn": ...}``) and,
for a server, the user and password as login and password; ``adplatform settings
--airflow-env`` prints it for the current configuration. It is parsed as the CLI parses the
settings' rendering of it (``adplatform.connections.clickhouse_target``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

from adplatform.clickhouse.client import clickhouse_client

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


class ClickHouseHook(BaseHook):
    conn_name_attr = "clickhouse_conn_id"
    default_conn_name = "clickhouse_default"
    conn_type = "generic"
    hook_name = "ClickHouse (clickhouse-connect)"

    def __init__(self, clickhouse_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.clickhouse_conn_id = clickhouse_conn_id

    def open_client(self) -> AbstractContextManager[Client]:
        """A client for the connection as it is now, closed when the ``with`` block ends."""
        return clickhouse_client(self.clickhouse_conn_id)
