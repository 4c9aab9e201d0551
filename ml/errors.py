"""The CTR model's expected failures: each message names the bad input and what to do."""


class CtrModelError(RuntimeError):
    """Base class: the CLI prints these as one-line errors."""


class TrainingDataError(CtrModelError):
    """The Gold training set is missing, empty, off-contract or degenerate (one class)."""


class SpecMismatch(CtrModelError):
    """A model and its feature specification (or the scorer's code) disagree."""


class CorruptArtifact(CtrModelError):
    """A serving artifact is incomplete or its checksums do not match its manifest."""


class NoServableModel(CtrModelError):
    """The serving location holds no version that can be served."""


class RequestError(CtrModelError):
    """A scoring request lacks a field the feature specification needs."""
