import click
import pytest
from click.testing import CliRunner

from adplatform.cli import cli
from adplatform.settings import Connection, get_settings


def _all_commands(group, path=()):
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from _all_commands(command, (*path, name))


@pytest.mark.parametrize("command", list(_all_commands(cli)), ids=" ".join)
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_bad_parameters_are_refused_before_anything_runs():
    result = CliRunner().invoke(cli, ["generate", "--start", "yesterday"])
    assert result.exit_code == 2
    assert "'yesterday' is not a date" in result.output
    result = CliRunner().invoke(cli, ["generate", "--late-rate", "2"])
    assert result.exit_code == 2


@pytest.fixture
def no_broker(monkeypatch, tmp_path):
    monkeypatch.setenv("ADP_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("ADP_KAFKA_PORT", "1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_an_unreachable_broker_is_one_line_and_exit_1(no_broker):
    result = CliRunner().invoke(cli, ["generate", "--requests", "10"])
    assert result.exit_code == 1
    assert result.output.startswith("error: Kafka broker at 127.0.0.1:1 is unreachable")
    assert "Traceback" not in result.output


def test_an_unknown_setting_is_one_line_and_exit_1(monkeypatch):
    monkeypatch.setenv("ADP_KAFKA_PROT", "1")
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, ["topics"])
    get_settings.cache_clear()
    assert result.exit_code == 1
    assert "unknown setting ADP_KAFKA_PROT: did you mean ADP_KAFKA_PORT?" in result.output


def test_the_cli_reads_the_airflow_connection_only_when_told_to(no_broker, monkeypatch):
    """Without --airflow-connections the CLI reads the ADP_* settings (port 1); with it, the
    kafka_default connection as a task would (port 2). Both brokers are absent: each error
    names the one that was tried."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_KAFKA_DEFAULT",
        Connection("kafka", extra={"bootstrap.servers": "127.0.0.1:2"}).to_json(),
    )
    local = CliRunner().invoke(cli, ["topics"])
    assert local.exit_code == 1
    assert local.output.startswith("error: Kafka broker at 127.0.0.1:1 is unreachable")

    in_airflow = CliRunner().invoke(cli, ["--airflow-connections", "topics"])
    assert in_airflow.exit_code == 1
    assert in_airflow.output.startswith("error: Kafka broker at 127.0.0.1:2 is unreachable")
