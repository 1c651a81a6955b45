"""params.yaml validation: every mistake is one line naming the key, the value and what is allowed."""

import pytest

from aeops.cli import main
from aeops.config import load_params, load_section, parse_section
from aeops.errors import ConfigError

CASES = [
    ("train", {"max_epoch": 3}, "unknown key 'train.max_epoch'", "max_epochs"),
    ("train", {"model": {"variant": "sparsee"}}, "train.model.variant = 'sparsee'", "vanilla"),
    ("train", {"model": {"mlp": {"hiden": [3]}}}, "unknown key 'train.model.mlp.hiden'", "hidden"),
    ("train", {"lr": -1}, "train.lr = -1", "greater than 0"),
    ("train", {"batch_size": "big"}, "train.batch_size = 'big'", "integer"),
    ("train", {"precision": "8-bit"}, "train.precision = '8-bit'", "32-true"),
    ("train", {"model": {"conv": {"kernel_size": 4}}}, "train.model.conv", "odd"),
    ("train", {"model": {"variant": "contractive", "mlp": {"batch_norm": True}}}, "train.model", "batch_norm: false"),
    ("train", {"model": {"mlp": {"dropout": 1.5}}}, "train.model.mlp.dropout = 1.5", "less than 1"),
    ("prepare", {"source": "cifar"}, "prepare.source = 'cifar'", "digits"),
    ("prepare", {"val_fraction": 0.7}, "prepare.val_fraction = 0.7", "less than 0.5"),
    ("prepare", {"normal_classes": [1], "anomaly_column": "y"}, "prepare", "prepare.normal_classes=null"),
    ("evaluate", {"threshold_percentile": 100}, "evaluate.threshold_percentile = 100", "less than 100"),
    ("evaluate", {"knn_weights": [2, 1]}, "evaluate", "positive and increasing, e.g. [1, 2, 4]; got [2.0, 1.0]"),
    ("evaluate", {"knn_weights": []}, "evaluate.knn_weights = []", "at least 1"),
    ("mlflow", {"experiment": "x", "uri": "y"}, "unknown key 'mlflow.uri'", "tracking_uri"),
]


@pytest.mark.parametrize("section,raw,where,allowed", CASES)
def test_bad_params_give_one_clear_line(section, raw, where, allowed):
    with pytest.raises(ConfigError) as err:
        parse_section(section, raw)
    msg = str(err.value)
    assert "\n" not in msg
    assert where in msg and allowed in msg


def test_shipped_params_yaml_is_valid():
    from conftest import REPO

    from aeops.config import SECTIONS

    shipped = load_params(REPO / "params.yaml")
    assert set(shipped) == set(SECTIONS), "params.yaml and the params schema name different sections"
    for section in SECTIONS:
        cfg = load_section(section, REPO / "params.yaml")
        assert cfg.model_dump(exclude_unset=True), f"params.yaml: section {section} sets nothing"


def test_stage_exits_2_with_message_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("prepare:\n  source: digits\n  sed: 1\n")
    assert main(["prepare"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: params.yaml: unknown key 'prepare.sed'") and "seed" in err
    assert not (tmp_path / "data").exists()


def test_invalid_yaml_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("prepare: [unclosed\n")
    assert main(["prepare"]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_params_yaml_and_the_pydantic_defaults_agree():
    """One source of defaults: every value params.yaml sets is its model's default (tests and pipeline agree)."""
    import yaml
    from conftest import REPO

    from aeops.config import SECTIONS

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(params) == set(SECTIONS)

    def differences(given: dict, default: dict, path: str) -> list[str]:
        found = []
        for key, value in given.items():
            if isinstance(value, dict) and isinstance(default.get(key), dict):
                found += differences(value, default[key], f"{path}{key}.")
            elif default.get(key, object()) != value:
                found.append(f"{path}{key}: params.yaml {value!r}, model {default.get(key, '<no such key>')!r}")
        return found

    diffs = [d for name, model in SECTIONS.items() for d in differences(params[name], model().model_dump(mode="json"), f"{name}.")]
    assert not diffs, diffs


def test_num_threads_auto_shares_the_usable_cores_and_yields_to_omp_num_threads(monkeypatch):
    from aeops.config import parse_section
    from aeops.training.threads import resolve_threads, usable_cores
    from aeops.training.train import local_processes

    cores = usable_cores()
    assert resolve_threads("auto", env={}) == cores
    assert resolve_threads("auto", processes=cores * 2, env={}) == 1  # never 0
    assert resolve_threads("auto", processes=2, env={}) == max(1, cores // 2)
    assert resolve_threads("auto", env={"OMP_NUM_THREADS": "3"}) is None  # the user's setting stands
    assert resolve_threads(5, env={"OMP_NUM_THREADS": "3"}) == 5  # an explicit param wins over it
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert local_processes(parse_section("train", {"accelerator": "cpu", "devices": 2})) == 2
    assert local_processes(parse_section("train", {"accelerator": "auto", "devices": 2})) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun
    assert local_processes(parse_section("train", {})) == 4
    for bad in (0, -1, 1.5, "many", True):
        with pytest.raises(ConfigError, match=r"train\.num_threads = .* whole number ≥ 1 or 'auto'"):
            parse_section("train", {"num_threads": bad})
