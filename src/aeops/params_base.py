"""Building blocks of the typed params, kept apart from `aeops.config` so variant modules can use them.

`Strict` forbids unknown keys; a search knob is a range `{low, high, log}`, a list `{choices: [...]}`
or a fixed value. Importing this module pulls in pydantic only.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Base model: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class FloatRange(Strict):
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _order(self) -> FloatRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        return self


class IntRange(FloatRange):
    low: int
    high: int


class Choices(Strict):
    choices: list[Any] = Field(min_length=1)


FloatKnob = FloatRange | Choices | float
IntKnob = IntRange | Choices | int


def choices(*values: Any) -> Any:
    """Field default: `{choices: [values...]}`."""
    return Field(default_factory=lambda: Choices(choices=list(values)))


def float_range(low: float, high: float, log: bool = False) -> Any:
    """Field default: `{low, high, log}`."""
    return Field(default_factory=lambda: FloatRange(low=low, high=high, log=log))


def int_range(low: int, high: int, log: bool = False) -> Any:
    """Field default: `{low, high, log}` of integers."""
    return Field(default_factory=lambda: IntRange(low=low, high=high, log=log))
