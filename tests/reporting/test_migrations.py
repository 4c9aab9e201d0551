"""Schema migrations on the real embedded engine: from empty, re-run, refusals."""

from __future__ import annotations

import pytest

from adplatform.clickhouse.client import clickhouse_client
from adplatform.clickhouse.migrate import (
    SchemaBehind,
    discover_migrations,
    migrate,
    require_current_schema,
    schema_state,
    split_statements,
)

TABLES = {
    "dim_advertisers",
    "dim_campaigns",
    "dim_creatives",
    "dim_line_items",
    "dim_publishers",
    "hourly_performance",
    "publish_log",
    "schema_migrations",
}


def _tables(client):
    return {row[0] for row in client.query("SHOW TABLES FROM adplatform").result_rows}


def test_migrating_an_empty_database_applies_each_migration_once_in_order(settings):
    with clickhouse_client(settings) as client:
        before = schema_state(client)
        assert [m.version for m in before.pending] == [1, 2, 3, 4]
        assert not before.current

        outcomes = migrate(client)

        assert [(m.version, outcome) for m, outcome in outcomes] == [
            (1, "applied"),
            (2, "applied"),
            (3, "applied"),
            # chDB has no writable access storage: the roles wait for a server.
            (4, "skipped: engine lacks access_management"),
        ]
        assert _tables(client) == TABLES
        state = schema_state(client)
        assert state.current
        assert state.applied == {1: "applied", 2: "applied", 3: "applied", 4: "skipped"}
        require_current_schema(client)
        fact = client.query(
            "SELECT engine, partition_key, sorting_key FROM system.tables "
            "WHERE database = 'adplatform' AND name = 'hourly_performance'"
        ).result_rows[0]
        assert fact == (
            "MergeTree",
            "event_date",
            "event_date, campaign_id, creative_id, publisher_id, event_hour, country, device_type",
        )


def test_a_rerun_changes_nothing_and_data_survives(settings):
    with clickhouse_client(settings) as client:
        migrate(client)
        client.command(
            "INSERT INTO adplatform.dim_publishers VALUES ('pub-1', 'News Daily', 0.5, 2)"
        )
        records = client.query("SELECT count() FROM adplatform.schema_migrations").result_rows

        outcomes = migrate(client)

        assert [outcome for _, outcome in outcomes] == [
            "already applied",
            "already applied",
            "already applied",
            "skipped: engine lacks access_management",
        ]
        assert client.query("SELECT count() FROM adplatform.schema_migrations").result_rows == (
            records
        )
        assert client.query("SELECT count() FROM adplatform.dim_publishers").result_rows == [(1,)]


def test_a_migration_edited_after_it_was_applied_is_refused(settings):
    with clickhouse_client(settings) as client:
        migrate(client)
        client.command(
            "INSERT INTO adplatform.schema_migrations "
            "VALUES (1, 'hourly_performance', 'an-older-checksum', 'applied', '', now64(3))"
        )
        with pytest.raises(SchemaBehind, match=r"0001_hourly_performance\.sql changed after"):
            migrate(client)


def test_a_schema_behind_or_ahead_of_the_code_is_refused(settings):
    with clickhouse_client(settings) as client:
        migrate(client)
        client.command("DELETE FROM adplatform.schema_migrations WHERE version = 3")
        with pytest.raises(SchemaBehind, match=r"behind this code.*0003_publish_log.sql"):
            require_current_schema(client)
        migrate(client)
        require_current_schema(client)
        client.command(
            "INSERT INTO adplatform.schema_migrations "
            "VALUES (99, 'from_the_future', 'x', 'applied', '', now64(3))"
        )
        with pytest.raises(SchemaBehind, match=r"ahead of this code.*\[99\]"):
            require_current_schema(client)


def test_every_statement_parses_in_the_engine_including_those_it_cannot_run(settings):
    """The role migration cannot run on chDB; ClickHouse's own parser still checks it."""
    with clickhouse_client(settings) as client:
        for migration in discover_migrations():
            for statement in migration.statements:
                client.query("SELECT formatQuery({sql:String})", parameters={"sql": statement})


def test_statements_split_on_semicolons_outside_quotes_and_comments():
    sql = """-- a comment; with a semicolon
    CREATE TABLE t (s String DEFAULT 'a;b');  /* block; comment */
    INSERT INTO t VALUES ('it''s; fine'), ("x;y");
    -- trailing comment only
    """
    assert split_statements(sql) == [
        "CREATE TABLE t (s String DEFAULT 'a;b')",
        "INSERT INTO t VALUES ('it''s; fine'), (\"x;y\")",
    ]
