"""Failure alerts: every DAG's on_failure_callback logs the failure and posts it to the webhook."""

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from adplatform.orchestration import alert_on_failure
from tests.conftest import free_port

FAILED = {
    "task_instance": SimpleNamespace(dag_id="ad_events_ingest", task_id="consume", run_id="r-1"),
    "exception": RuntimeError("broker unreachable"),
}
TEXT = "adplatform alert: ad_events_ingest.consume failed in run r-1: broker unreachable"


@pytest.fixture
def webhook(monkeypatch) -> Iterator[list[dict]]:
    """A real HTTP endpoint on loopback; yields the JSON bodies posted to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ADP_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    yield received
    server.shutdown()
    server.server_close()


def test_a_failure_is_logged_and_posted_to_the_webhook(webhook, caplog):
    with caplog.at_level(logging.ERROR, "adplatform.orchestration"):
        alert_on_failure(FAILED)
    assert webhook == [{"text": TEXT}]
    assert TEXT in caplog.text


def test_without_a_webhook_the_alert_is_logged(caplog):
    with caplog.at_level(logging.ERROR, "adplatform.orchestration"):
        alert_on_failure(FAILED)
    assert caplog.messages == [TEXT]


def test_a_webhook_that_is_down_never_masks_the_failure(monkeypatch, caplog):
    monkeypatch.setenv("ADP_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/secret-token")
    with caplog.at_level(logging.ERROR, "adplatform.orchestration"):
        alert_on_failure(FAILED)  # does not raise
    assert caplog.messages[0] == TEXT
    assert caplog.messages[1].startswith("alert webhook (ADP_ALERT_WEBHOOK_URL) failed: ")
    assert "Connection refused" in caplog.messages[1]
    assert "secret-token" not in caplog.text
