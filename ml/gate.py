"""The promotion gate: a challenger replaces the champion only when it is clearly better on the
same holdout and calibrated."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateConfig:
    min_improvement: float  # relative holdout log-loss gain needed over the champion
    max_calibration_deviation: float  # |predicted / observed clicks - 1| allowed


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    reference: str  # what the challenger was measured against

    @property
    def label(self) -> str:
        return "promoted" if self.promote else "rejected"


def decide(
    challenger: dict[str, float], champion: dict[str, float] | None, config: GateConfig
) -> GateDecision:
    """Judge holdout metrics (see ``ml.metrics.evaluate``). Without a champion, the challenger
    must beat predicting the holdout's average CTR (normalised entropy below 1) by the margin."""
    deviation = abs(challenger["calibration"] - 1)
    reference = "champion" if champion else "average CTR"
    if deviation > config.max_calibration_deviation:
        return GateDecision(
            False,
            f"miscalibrated: predicts {challenger['calibration']:.3f}x the observed clicks, "
            f"outside 1 ± {config.max_calibration_deviation}",
            reference,
        )
    if champion is None:
        needed = 1 - config.min_improvement
        actual = challenger["normalized_entropy"]
    else:
        needed = champion["logloss"] * (1 - config.min_improvement)
        actual = challenger["logloss"]
    metric = "normalised entropy" if champion is None else "log loss"
    if actual > needed:
        return GateDecision(
            False,
            f"not better than the {reference}: {metric} {actual:.5f} > {needed:.5f} "
            f"(needs a {config.min_improvement:.2%} improvement)",
            reference,
        )
    return GateDecision(
        True,
        f"better than the {reference}: {metric} {actual:.5f} <= {needed:.5f}, "
        f"calibration {challenger['calibration']:.3f}",
        reference,
    )
