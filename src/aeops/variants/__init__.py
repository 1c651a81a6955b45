"""The variant registry: every autoencoder variant is one module here, listed once in `BUILTIN`.

`aeops.config` (the `variant` choices, `train.model.<name>` sections, `tune.space` knobs), the
factory and the search space are all derived from it. Register before `aeops.config` is imported:
its models are built from the registry once, after which `register` refuses.
"""

from __future__ import annotations

from importlib import import_module

from aeops.variants.spec import Knob, Suggest, VariantSpec

__all__ = ["BUILTIN", "Knob", "Suggest", "VariantSpec", "freeze", "get", "names", "register", "specs"]

_SPECS: dict[str, VariantSpec] = {}
_frozen = False


def register(spec: VariantSpec) -> VariantSpec:
    """Add a variant (after the ones already registered: the order is the params' and the search's)."""
    if _frozen:
        raise RuntimeError(f"variant '{spec.name}' registered after aeops.config was imported; register it first")
    if spec.name in _SPECS:
        raise ValueError(f"variant '{spec.name}' is already registered")
    owners = {knob: other.name for other in _SPECS.values() for knob in other.knobs}
    clash = [knob for knob in spec.knobs if knob in owners]
    if clash:
        raise ValueError(f"variant '{spec.name}': tune.space knobs {clash} already belong to {owners[clash[0]]!r}")
    _SPECS[spec.name] = spec
    return spec


def freeze() -> tuple[VariantSpec, ...]:
    """The specs, in order; later `register` calls fail (aeops.config calls this once)."""
    global _frozen
    _frozen = True
    return specs()


def specs() -> tuple[VariantSpec, ...]:
    return tuple(_SPECS.values())


def names() -> tuple[str, ...]:
    return tuple(_SPECS)


def get(name: str) -> VariantSpec:
    return _SPECS[name]


# The one line to edit when adding a variant module (the order is the order of params and search choices).
BUILTIN = ("vanilla", "denoising", "sparse", "contractive", "variational", "discriminative")
for _name in BUILTIN:
    register(import_module(f"{__name__}.{_name}").SPEC)
