"""Versioned schema migrations: ``migrations/NNNN_name.sql``, applied in order, each once.

Each applied migration is recorded in ``adplatform.schema_migrations`` with the checksum of its
file; an applied file that changes afterwards is refused (add a new migration instead). ClickHouse
DDL is not transactional, so every statement is written to be re-runnable (``IF NOT EXISTS``):
a run that dies halfway is finished by the next one.

A migration can name an engine capability on a ``-- requires: <capability>`` line. Where the
engine lacks it (the role migration on chDB, which has no writable access storage), the runner
records it as skipped with the reason, and applies it if a later run finds the capability.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from adplatform.clickhouse.client import DATABASE, ClickHouseError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

HERE = Path(__file__).parent
MIGRATIONS_DIR = HERE / "migrations"
BOOTSTRAP = HERE / "schema_migrations.sql"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_REQUIRES = re.compile(r"^--\s*requires:\s*(\w+)\s*$", re.MULTILINE)


class SchemaBehind(ClickHouseError):
    """The database's schema does not match this code's migrations."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @cached_property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def requires(self) -> tuple[str, ...]:
        return tuple(_REQUIRES.findall(self.sql))

    @property
    def statements(self) -> list[str]:
        return split_statements(self.sql)

    def __str__(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class SchemaState:
    applied: dict[int, str]  # version -> 'applied' or 'skipped'
    pending: list[Migration]
    unknown: list[int]  # versions recorded in the database that this code does not have

    @property
    def current(self) -> bool:
        return not self.pending and not self.unknown


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise ClickHouseError(f"migration file {path} is not named NNNN_lowercase_name.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ClickHouseError(
            f"migrations in {directory} must be numbered 1, 2, 3, ...: {versions}"
        )
    return migrations


def split_statements(sql: str) -> list[str]:
    """The statements of a SQL file: split on ';' outside quotes, comments removed."""
    statements: list[str] = []
    current: list[str] = []
    i, quote = 0, ""
    while i < len(sql):
        char = sql[i]
        if quote:
            current.append(char)
            if char == "\\" and i + 1 < len(sql):
                current.append(sql[i + 1])
                i += 1
            elif char == quote:
                quote = ""
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = len(sql) if newline < 0 else newline
            continue
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = len(sql) if end < 0 else end + 2
            continue
        elif char in "'\"`":
            quote = char
            current.append(char)
        elif char == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    statements.append("".join(current).strip())
    return [statement for statement in statements if statement]


def _has_access_management(client: Client) -> bool:
    """Roles need a writable access storage (a server's local_directory or replicated one)."""
    return bool(
        client.query(
            "SELECT count() FROM system.user_directories "
            "WHERE type IN ('local_directory', 'replicated')"
        ).result_rows[0][0]
    )


CAPABILITIES: dict[str, Callable[[Client], bool]] = {"access_management": _has_access_management}


def _missing_capabilities(client: Client, migration: Migration) -> list[str]:
    unknown = [c for c in migration.requires if c not in CAPABILITIES]
    if unknown:
        raise ClickHouseError(
            f"{migration} requires unknown capability {', '.join(unknown)}; "
            f"known: {', '.join(CAPABILITIES)}"
        )
    return [c for c in migration.requires if not CAPABILITIES[c](client)]


def _recorded(client: Client) -> dict[int, tuple[str, str]]:
    """version -> (checksum, status) as recorded; empty when nothing was ever migrated."""
    exists = client.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        parameters={"db": DATABASE, "t": "schema_migrations"},
    ).result_rows[0][0]
    if not exists:
        return {}
    rows = client.query(
        "SELECT version, argMax(checksum, applied_at), argMax(status, applied_at) "
        "FROM adplatform.schema_migrations GROUP BY version"
    ).result_rows
    return {int(version): (checksum, str(status)) for version, checksum, status in rows}


def _check_unchanged(migration: Migration, recorded_checksum: str) -> None:
    if recorded_checksum != migration.checksum:
        raise SchemaBehind(
            f"{migration} changed after it was applied to ClickHouse (checksum "
            f"{recorded_checksum[:12]} recorded, {migration.checksum[:12]} now): restore the "
            "file and put the change in a new migration"
        )


def schema_state(client: Client) -> SchemaState:
    """Where the database stands against this code's migrations; changes nothing."""
    migrations = discover_migrations()
    recorded = _recorded(client)
    for migration in migrations:
        if migration.version in recorded:
            _check_unchanged(migration, recorded[migration.version][0])
    known = {m.version for m in migrations}
    return SchemaState(
        applied={v: status for v, (_, status) in recorded.items()},
        pending=[m for m in migrations if m.version not in recorded],
        unknown=sorted(set(recorded) - known),
    )


def require_current_schema(client: Client) -> None:
    """Refuse to go on against a schema that is behind (or ahead of) the migrations."""
    state = schema_state(client)
    if state.pending:
        raise SchemaBehind(
            f"the ClickHouse schema is behind this code: {len(state.pending)} migration(s) not "
            f"applied ({', '.join(map(str, state.pending))}); run `adplatform clickhouse "
            "migrate` first"
        )
    if state.unknown:
        raise SchemaBehind(
            f"the ClickHouse schema is ahead of this code: it has migration version(s) "
            f"{state.unknown} that this code does not know; deploy the newer code"
        )


def migrate(client: Client) -> list[tuple[Migration, str]]:
    """Apply every pending migration in order; returns each migration with what happened."""
    for statement in split_statements(BOOTSTRAP.read_text()):
        client.command(statement)
    recorded = _recorded(client)
    outcomes = []
    for migration in discover_migrations():
        checksum, status = recorded.get(migration.version, ("", ""))
        if status:
            _check_unchanged(migration, checksum)
        if status == "applied":
            outcomes.append((migration, "already applied"))
            continue
        missing = _missing_capabilities(client, migration)
        if missing:
            note = f"engine lacks {', '.join(missing)}"
            if status != "skipped":
                _record(client, migration, "skipped", note)
            outcomes.append((migration, f"skipped: {note}"))
            continue
        for statement in migration.statements:
            try:
                client.command(statement)
            except Exception as error:
                raise ClickHouseError(
                    f"{migration} failed at: {statement.splitlines()[0]}...: {error}"
                ) from error
        _record(client, migration, "applied", "")
        outcomes.append((migration, "applied"))
    return outcomes


def _record(client: Client, migration: Migration, status: str, note: str) -> None:
    client.insert(
        f"{DATABASE}.schema_migrations",
        [[migration.version, migration.name, migration.checksum, status, note, datetime.now(UTC)]],
        column_names=["version", "name", "checksum", "status", "note", "applied_at"],
    )
