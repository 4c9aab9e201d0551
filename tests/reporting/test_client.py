"""The one client: chDB's one-process-per-directory rule, met with a wait and a clear error."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from adplatform.clickhouse import client as clickhouse_client
from adplatform.clickhouse.client import ClickHouseError, lock_holder, open_client, redact

HOLDER = textwrap.dedent("""
    import sys, time
    from adplatform.clickhouse.client import open_client
    with open_client("chdb://" + sys.argv[1]) as client:
        client.command("SELECT 1")
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def hold(path, seconds):
    """Another process with the engine open on ``path`` for ``seconds``, started and ready."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
    return holder


def test_a_directory_held_by_another_process_fails_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(clickhouse_client, "CHDB_BUSY_WAIT_SECONDS", 1.0)
    holder = hold(tmp_path / "ch", 60)
    try:
        assert lock_holder(tmp_path / "ch") == holder.pid
        with (
            pytest.raises(ClickHouseError, match=f"in use by process {holder.pid}.*'clickhouse'"),
            open_client(f"chdb://{tmp_path / 'ch'}"),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_client_waits_for_the_holder_to_finish(tmp_path):
    holder = hold(tmp_path / "ch", 2)
    try:
        with open_client(f"chdb://{tmp_path / 'ch'}") as client:
            assert client.query("SELECT 1").result_rows == [(1,)]
        assert holder.wait(timeout=30) == 0
        assert lock_holder(tmp_path / "ch") is None  # closing the client released the lock
    finally:
        holder.kill()
        holder.wait()


def test_clients_in_one_process_share_the_engine(tmp_path):
    dsn = f"chdb://{tmp_path / 'ch'}"
    with open_client(dsn) as first, open_client(dsn) as second:
        first.command("CREATE TABLE t (x Int8) ENGINE = Memory")
        assert second.query("EXISTS TABLE t").result_rows == [(1,)]
        with (
            pytest.raises(ClickHouseError, match="another chDB data directory open"),
            open_client(f"chdb://{tmp_path / 'other'}"),
        ):
            pass


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("chdb://relative/dir", "names no absolute directory"),
        ("postgres://db:5432", "unsupported ClickHouse DSN"),
        ("http://127.0.0.1:1", "cannot reach ClickHouse at http://127.0.0.1:1"),
    ],
)
def test_a_bad_dsn_names_the_fix(dsn, message):
    with pytest.raises(ClickHouseError, match=message), open_client(dsn):
        pass


def test_credentials_never_reach_a_message():
    assert redact("https://admin:s3cret@ch.example.com:8443") == "https://***@ch.example.com:8443"
