"""Turn the `tune.space` params into Optuna suggestions and a training config."""

from __future__ import annotations

from typing import Any

import optuna

from aeops import variants
from aeops.config import Choices, FloatRange, IntRange, ModelConfig, SearchSpace


def suggest(trial: optuna.Trial, name: str, knob: Any) -> Any:
    """A range → suggest_int/float (log if asked), choices → categorical, a fixed value → itself."""
    if isinstance(knob, Choices):
        return knob.choices[0] if len(knob.choices) == 1 else trial.suggest_categorical(name, knob.choices)
    if isinstance(knob, IntRange):
        return trial.suggest_int(name, knob.low, knob.high, log=knob.log)
    if isinstance(knob, FloatRange):
        return trial.suggest_float(name, knob.low, knob.high, log=knob.log)
    return knob


def cap_latent(knob: Any, n_features: int | None) -> Any:
    """The latent knob limited to at most half the input width.

    A code nearly as wide as the input can all but copy it: reconstruction then says little about
    whether a row is normal (on tables, tune picked 9-of-10 or 57-of-6 codes before this cap).
    """
    if n_features is None:
        return knob
    top = max(1, n_features // 2)
    if isinstance(knob, Choices):
        kept = [c for c in knob.choices if c <= top]
        return Choices(choices=kept or [top])
    if isinstance(knob, IntRange):
        if knob.high <= top:
            return knob
        return top if knob.low >= top else IntRange(low=knob.low, high=top, log=knob.log)
    return min(int(knob), top)


def sample_train_overrides(trial: optuna.Trial, space: SearchSpace, n_features: int | None = None) -> dict[str, Any]:
    """Sample one training config: `{"lr", "weight_decay", "batch_size", "model": {...}}`.

    Penalty knobs are sampled only for the variant that owns them (`VariantSpec.sample`: a conditional
    search space); the latent size stays below `n_features`.
    """
    s = space
    variant = suggest(trial, "variant", s.variant)
    spec = variants.get(variant)
    architecture = suggest(trial, "architecture", s.architecture)
    depth = suggest(trial, "depth", s.depth)
    latent = suggest(trial, "latent_dim", cap_latent(s.latent_dim, n_features))
    activation = suggest(trial, "activation", s.activation)
    bn = False if spec.batch_norm_conflict else suggest(trial, "batch_norm", s.batch_norm)
    model: dict[str, Any] = {"variant": variant, "architecture": architecture, "latent_dim": latent}
    if architecture == "mlp":
        width = suggest(trial, "width", s.width)
        model["mlp"] = {
            "hidden": [max(latent, width // 2**i) for i in range(depth)],
            "activation": activation,
            "batch_norm": bn,
            "dropout": suggest(trial, "dropout", s.dropout),
        }
    else:
        base = suggest(trial, "conv_channels", s.conv_channels)
        model["conv"] = {"channels": [base * 2**i for i in range(depth)], "activation": activation, "batch_norm": bn}
    if architecture not in spec.architectures:  # a pair the space allows but the variant cannot build
        import optuna

        raise optuna.TrialPruned(f"variant {variant!r} needs architecture {' or '.join(spec.architectures)}")
    if spec.sample is not None:  # the variant's own knobs, after the architecture's (the suggestion order)
        model[spec.name] = spec.sample(lambda knob: suggest(trial, knob, getattr(s, knob)))
    return {
        "lr": suggest(trial, "lr", s.lr),
        "weight_decay": suggest(trial, "weight_decay", s.weight_decay),
        "batch_size": suggest(trial, "batch_size", s.batch_size),
        "model": ModelConfig.model_validate(model).model_dump(),
    }
