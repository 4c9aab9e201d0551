"""The promotion gate's decisions, from holdout numbers alone."""

import pytest

from ml.gate import GateConfig, decide

CONFIG = GateConfig(min_improvement=0.01, max_calibration_deviation=0.1)


def metrics(logloss=0.15, normalized_entropy=0.96, calibration=1.0):
    return {
        "logloss": logloss,
        "normalized_entropy": normalized_entropy,
        "calibration": calibration,
    }


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "reason"),
    [
        (metrics(logloss=0.1480), metrics(logloss=0.15), True, "better than the champion"),
        (metrics(logloss=0.1490), metrics(logloss=0.15), False, "needs a 1.00% improvement"),
        (metrics(logloss=0.1600), metrics(logloss=0.15), False, "not better than the champion"),
        (metrics(logloss=0.1400, calibration=1.2), metrics(), False, "miscalibrated"),
        (metrics(calibration=0.85), None, False, "outside 1 ± 0.1"),
        (metrics(normalized_entropy=0.995), None, False, "not better than the average CTR"),
        (metrics(normalized_entropy=0.95), None, True, "better than the average CTR"),
    ],
)
def test_decisions(challenger, champion, promote, reason):
    decision = decide(challenger, champion, CONFIG)
    assert decision.promote is promote
    assert reason in decision.reason
    assert decision.label == ("promoted" if promote else "rejected")
