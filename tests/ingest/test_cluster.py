"""Ingest on a three-node broker cluster that loses nodes: the soak (benchmarks/soak.py) in
short. Workers are SIGKILLed at random moments and brokers (acks=all, min.insync.replicas=2)
are SIGKILLed and restarted while the generator produces and workers ingest; every produced
message is then reconciled against the generator's ledger."""

from __future__ import annotations

import pytest

from benchmarks.soak import soak, topic_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_killed_brokers_and_workers_lose_and_double_nothing(kafka_cluster, tmp_path):
    settings = topic_settings(kafka_cluster, tmp_path / "lake", "cluster-events")
    report = soak(
        kafka_cluster,
        settings,
        tmp_path / "work",
        worker_kills=6,
        broker_kills=2,
        rate=500,
        requests=8_000,
    )
    assert report.broker_kills == 2 and report.broker_kills_while_producing > 0
    assert (report.lost, report.duplicated) == (0, 0), report
    assert report.in_bronze + report.quarantined == report.produced
    assert report.in_bronze == report.valid
