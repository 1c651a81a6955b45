"""Errors that stop a stage with one clear line (no traceback)."""


class AeopsError(Exception):
    """Base class: the message names what is wrong and what is allowed."""


class ConfigError(AeopsError):
    """A params value is invalid."""


class DataError(AeopsError):
    """An input data file is invalid."""


class PromotionRefused(AeopsError):
    """A candidate model is worse than production on the promotion metric."""


class TrainingDiverged(AeopsError):
    """The loss became NaN or infinite; nothing is written or registered."""


class TrackingUnavailable(AeopsError):
    """The MLflow tracking server cannot be reached."""


class TrackingLost(AeopsError):
    """The tracking store no longer holds a run that the pipeline's outputs name."""
