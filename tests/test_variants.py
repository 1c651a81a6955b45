"""The variant registry is the single source: params, factory and search space all follow it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import get_args

import optuna
import pytest
import torch
from conftest import REPO

from aeops import variants
from aeops.config import ModelConfig, SearchSpace, Variant, parse_section
from aeops.errors import ConfigError
from aeops.models import build_autoencoder
from aeops.tuning.space import sample_train_overrides

SPECS = variants.specs()
ALL_KNOBS = [knob for spec in SPECS for knob in spec.knobs]


def test_params_and_search_space_list_exactly_the_registry():
    names = variants.names()
    assert get_args(Variant) == names and names[0] == "vanilla"  # the default
    sections = [name for name in ModelConfig.model_fields if name in names]
    assert sections == [spec.name for spec in SPECS if spec.config is not None]
    assert all(ModelConfig.model_fields[spec.name].annotation is spec.config for spec in SPECS if spec.config)
    assert SearchSpace().variant.choices == [n for n in names if "mlp" in variants.get(n).architectures]
    assert list(SearchSpace.model_fields)[-len(ALL_KNOBS):] == ALL_KNOBS
    listed = ", ".join(map(repr, names[:-1])) + f" or {names[-1]!r}"
    with pytest.raises(ConfigError, match=listed):
        parse_section("train", {"model": {"variant": "plain"}})
    with pytest.raises(ConfigError, match=re.escape(f"allowed: {sorted(names)}")):
        parse_section("tune", {"space": {"variant": {"choices": ["plain"]}}})


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_factory_and_sampler_follow_each_spec(spec):
    torch.manual_seed(0)
    arch = spec.architectures[0]
    model = build_autoencoder(ModelConfig(variant=spec.name, architecture=arch, latent_dim=3, mlp={"hidden": [8]},
                                          conv={"channels": [2]}), 4, image_shape=(1, 2, 2))
    x = torch.rand(2, 4)
    assert model.encoder(x).shape == (2, spec.code_width(3)) and model.encode(x).shape == (2, 3)
    space = SearchSpace(variant={"choices": [spec.name]}, architecture={"choices": [arch]},
                        batch_norm={"choices": [False, True]})
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    overrides = sample_train_overrides(trial, space, 4)
    assert {k for k in trial.params if k in ALL_KNOBS} <= set(spec.knobs)  # only its own penalty knobs
    assert ("batch_norm" in trial.params) == (spec.batch_norm_conflict is None)
    assert (spec.name in overrides["model"]) == (spec.sample is not None) == bool(spec.knobs)
    assert overrides["model"] == ModelConfig.model_validate(overrides["model"]).model_dump()


def test_a_conv_only_variant_is_left_out_of_an_mlp_search_and_pruned_where_paired_with_mlp():
    with pytest.raises(ConfigError, match="variant choice 'discriminative' needs architecture conv"):
        parse_section("tune", {"space": {"variant": {"choices": ["vanilla", "discriminative"]}}})
    space = SearchSpace(variant={"choices": ["discriminative"]}, architecture={"choices": ["mlp", "conv"]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    outcomes = set()
    for _ in range(12):
        trial = study.ask()
        try:
            outcomes.add(sample_train_overrides(trial, space, 4)["model"]["architecture"])
        except optuna.TrialPruned as why:
            assert "needs architecture conv" in str(why)
            outcomes.add("pruned")
    assert outcomes == {"conv", "pruned"}


def test_registering_after_config_is_built_is_refused():
    with pytest.raises(RuntimeError, match="register it first"):
        variants.register(variants.VariantSpec(name="late", build=lambda *a: None))
    assert "late" not in variants.names()


TOY_MODEL = '''
"""Its nn.Module (torch-heavy modules stay out of the spec's import, as models/autoencoder.py does)."""
from aeops.models.autoencoder import Autoencoder


class ToyAutoencoder(Autoencoder):
    """The encoder emits two halves, the first is the code; penalty weight·mean‖z‖²."""

    def __init__(self, encoder, decoder, weight):
        super().__init__(encoder, decoder)
        self.weight = weight

    def encode(self, x):
        return self.encoder(x).chunk(2, dim=1)[0]

    def encode_for_loss(self, x):
        return self.encode(x), None

    def penalty(self, x, z, extra):
        return self.weight * z.pow(2).sum(1).mean()
'''

TOY = '''
"""A throw-away variant, declared as a built-in one is in aeops/variants/<name>.py."""
from pydantic import Field

from aeops.params_base import FloatKnob, Strict, float_range
from aeops.variants import Knob, VariantSpec


class ToyConfig(Strict):
    weight: float = Field(0.5, gt=0)


def build(encoder, decoder, cfg, n_features):
    from toy_model import ToyAutoencoder

    return ToyAutoencoder(encoder, decoder, cfg.weight)


SPEC = VariantSpec(
    name="toy",
    build=build,
    config=ToyConfig,
    code_width=lambda latent_dim: 2 * latent_dim,
    knobs={"toy_weight": Knob(FloatKnob, float_range(0.1, 0.9))},
    sample=lambda suggest: {"weight": suggest("toy_weight")},
)
'''

CHECK = '''
import optuna, pytest, torch
import toy
from aeops import variants

with pytest.raises(ValueError, match="already registered"):
    variants.register(variants.get("sparse"))
with pytest.raises(ValueError, match="already belong to 'variational'"):
    variants.register(variants.VariantSpec(name="other", build=toy.build, knobs={"beta": toy.SPEC.knobs["toy_weight"]}))
last_section = [spec.name for spec in variants.specs() if spec.config][-1]
last_knob = [knob for spec in variants.specs() for knob in spec.knobs][-1]
variants.register(toy.SPEC)  # what adding "toy" to variants.BUILTIN does

from aeops.config import parse_section
from aeops.errors import ConfigError
from aeops.models import build_autoencoder
from aeops.tuning.space import sample_train_overrides

cfg = parse_section("train", {"model": {"variant": "toy", "latent_dim": 3, "toy": {"weight": 2.0}}}).model
assert list(cfg.model_dump())[-2:] == [last_section, "toy"] and cfg.toy.weight == 2.0
for raw, words in [({"model": {"variant": "toyy"}}, "or 'toy'"),
                   ({"model": {"toy": {"wieght": 1}}}, "allowed here: weight"),
                   ({"model": {"toy": {"weight": 0}}}, "train.model.toy.weight = 0")]:
    with pytest.raises(ConfigError, match=words):
        parse_section("train", raw)
with pytest.raises(ConfigError, match=f"{last_knob}, toy_weight"):
    parse_section("tune", {"space": {"toy_wieght": 0.5}})

space = {"variant": {"choices": ["toy"]}, "toy_weight": {"low": 0.2, "high": 0.3}}
space = parse_section("tune", {"space": space}).space
trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
overrides = sample_train_overrides(trial, space, 6)
assert overrides["model"]["toy"] == {"weight": trial.params["toy_weight"]} and 0.2 <= trial.params["toy_weight"] <= 0.3
assert not {"noise", "l1_weight", "contractive_weight", "beta"} & set(trial.params)

torch.manual_seed(0)
model = build_autoencoder(overrides["model"], 6)  # as the Lightning module does from its hparams
x = torch.rand(4, 6)
out = model.train()(x)
latent = overrides["model"]["latent_dim"]
assert type(model).__name__ == "ToyAutoencoder" and model.encoder(x).shape == (4, 2 * latent)
assert out.z.shape == (4, latent) and out.reg_loss > 0
print("toy ok")
'''


def test_a_new_variant_needs_one_module_and_its_registration(tmp_path):
    """A variant module outside the package, registered before aeops.config is imported (a fresh process)."""
    (tmp_path / "toy.py").write_text(TOY)
    (tmp_path / "toy_model.py").write_text(TOY_MODEL)
    path = os.pathsep.join([str(tmp_path), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env={**os.environ, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "toy ok"
