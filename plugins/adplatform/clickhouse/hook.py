"""An Airflow hook for ClickHouse through clickhouse-connect: no provider offers one.

The connection (``clickhouse_default``) carries the DSN in its extra (``{"dsn": ...}``) and,
for a server, the user and password as login and password; ``adplatform settings
--airflow-env`` prints it for the current configuration.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

from adplatform.clickhouse.client import ClickHouseError, open_client

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
        """A client for the connection's DSN, closed when the ``with`` block ends."""
        connection = self.get_connection(self.clickhouse_conn_id)
        dsn = connection.extra_dejson.get("dsn")
        if not dsn:
            raise ClickHouseError(
                f"Airflow connection {self.clickhouse_conn_id!r} has no 'dsn' in its extra: "
                "set it to chdb:///path or http(s)://host:port (see `adplatform settings "
                "--airflow-env`)"
            )
        return open_client(dsn, connection.login or "default", connection.password or "")
