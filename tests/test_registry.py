"""Registry, promotion by alias, REST serving, batch scoring and ONNX export on a trained digits model."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_train

from aeops.cli import main
from aeops.config import EvaluateConfig, MlflowConfig, PrepareConfig, RegisterConfig
from aeops.data.prepare import prepare
from aeops.errors import DataError, PromotionRefused
from aeops.evaluation.evaluate import evaluate
from aeops.registry.promote import promote
from aeops.registry.register import raw_split, register
from aeops.serving.http import wait_until_up
from aeops.training.train import train

pytestmark = pytest.mark.slow
MLFLOW = MlflowConfig()
CFG = RegisterConfig()
SMOOTHING, TOP = 0.8, 0.25  # the served score must follow evaluate's rule, not plain MSE


def _train_and_register(epochs: int, lr: float) -> dict:
    cfg = tiny_train()
    cfg.max_epochs, cfg.patience, cfg.lr = epochs, epochs, lr
    train(cfg, MLFLOW)
    evaluate(EvaluateConfig(isolation_forest_trees=20, score_smoothing=SMOOTHING, score_top_fraction=TOP), MLFLOW)
    return register(CFG, MLFLOW)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """Version 1: a decent model (20 epochs); version 2: a worse one (1 epoch at a tiny learning rate).

    Both are made here, so every test finds them whatever ran before; tests set the aliases they need.
    cwd and MLflow store in a temp dir for the module.
    """
    root = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        (root / "params.yaml").write_text("register: {}\n")  # defaults, for the CLI
        prepare(PrepareConfig(normal_classes=list(range(9))))
        good = _train_and_register(20, 3e-3)
        worse = _train_and_register(1, 1e-5)
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        assert (good["version"], worse["version"]) == (1, 2)
        yield root, worse


def test_registered_version_is_a_complete_scoring_model(registry):
    root, last = registry
    assert json.loads((root / CFG.output_file).read_text()) == last  # register's record of the newest version
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(CFG.model_name, "challenger").version) == "2"
    mv = client.get_model_version(CFG.model_name, "1")
    # Version tags are what users filter on; the numbers sit on the logged model; the description tells the story.
    registered = {"git_commit", "data_hash", "run_id", "latent_dim", "data", "variant", "architecture", "dvc_experiment"}
    assert set(mv.tags) - registered <= {"promoted_at", "promotion_reason", "previous_version"}  # promote's, if run first
    assert (mv.tags["data"], mv.tags["variant"], mv.tags["latent_dim"]) == ("digits[0-8]", "vanilla", "4")
    metrics = {m.key: m.value for m in client.get_logged_model(mv.source.removeprefix("models:/")).metrics}
    assert {"test/auroc", "test/threshold", "vs_baseline/knn_distance/auroc", "vs_baseline/pca/auroc"} <= set(metrics)
    assert f"Test AUROC **{metrics['test/auroc']:.3f}**" in mv.description and "kNN distance" in mv.description
    assert "Score: residual." in mv.description  # images: the residual alone (evaluate.score_neighbors auto)
    assert "anomaly_score" in client.get_registered_model(CFG.model_name).description
    run_tags = client.get_run(mv.run_id).data.tags

    model = mlflow.pyfunc.load_model(f"models:/{CFG.model_name}/1")
    df, split = raw_split("data/prepared")
    inputs = model.metadata.get_input_schema().inputs
    assert [c.name for c in inputs] == list(df.columns) and {c.type.name for c in inputs} == {"float"}
    out = model.predict(df)
    assert list(out.columns[:3]) == ["anomaly_score", "is_anomaly", "reconstruction_error"]
    assert [c for c in out.columns if c.startswith("z_")] == [f"z_{i}" for i in range(4)]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(split.is_anomaly, out["anomaly_score"]) == pytest.approx(metrics["test/auroc"], abs=1e-6)
    assert (out["is_anomaly"] == (out["anomaly_score"] > metrics["test/threshold"])).all()
    assert (float(run_tags["evaluate.score_smoothing"]), float(run_tags["evaluate.score_top_fraction"])) == (SMOOTHING, TOP)
    assert not np.allclose(out["anomaly_score"], out["reconstruction_error"])  # the rule, not plain MSE
    recon = model.predict(df.head(3), params={"output": "reconstruction"})
    assert list(recon.columns) == list(df.columns) and recon.shape == (3, 64)
    assert 0 <= recon.to_numpy().min() and recon.to_numpy().max() <= 16.5  # raw pixel units


def test_promotion_gate_force_and_rollback(registry, capsys):
    client = mlflow.MlflowClient()
    for alias in ("production", "previous"):  # start from a registry without production
        client.delete_registered_model_alias(CFG.model_name, alias)
    client.set_registered_model_alias(CFG.model_name, "challenger", "1")
    assert promote(CFG, MLFLOW)["production"] == "1"  # the first production version needs no gate
    client.set_registered_model_alias(CFG.model_name, "challenger", "2")  # the worse model
    with pytest.raises(PromotionRefused) as err:
        promote(CFG, MLFLOW)
    msg = str(err.value)
    assert "version 2" in msg and "production version 1" in msg and msg.count("0.") >= 2
    assert str(client.get_model_version_by_alias(CFG.model_name, "production").version) == "1"
    assert main(["promote"]) == 1 and "refused:" in capsys.readouterr().err

    r = promote(CFG, MLFLOW, force=True)
    assert r["production"] == "2" and r["previous"] == "1" and "forced" in r["reason"]
    mv = client.get_model_version_by_alias(CFG.model_name, "production")
    assert mv.tags["previous_version"] == "1" and "promoted_at" in mv.tags
    assert "Alias `production` set at" in mv.description and "(forced)" in mv.description
    assert str(client.get_model_version_by_alias(CFG.model_name, "previous").version) == "1"

    assert main(["promote", "--rollback"]) == 0
    assert str(client.get_model_version_by_alias(CFG.model_name, "production").version) == "1"
    assert str(client.get_model_version_by_alias(CFG.model_name, "previous").version) == "2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a listening TCP socket on `port` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if int(p, 16) == port and state == "0A":  # 0A = LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return found


def _post(port: int, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_rest_server_answers_like_predict_and_rejects_bad_payloads(registry):
    root, _ = registry
    promote(CFG, MLFLOW, version="1", force=True)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    server = subprocess.Popen(
        [sys.executable, "-m", "aeops.cli", "serve", "--port", str(port)], cwd=root, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", server)
        assert _listening_addresses(port) == {"127.0.0.1"}  # bound to loopback only
        df = raw_split(str(root / "data/prepared"))[0].head(20)
        expected = mlflow.pyfunc.load_model(f"models:/{CFG.model_name}@production").predict(df)
        for body in ({"dataframe_split": df.to_dict(orient="split")}, {"inputs": df.to_dict(orient="records")}):
            status, answer = _post(port, json.dumps(body).encode())
            assert status == 200
            got = pd.DataFrame(answer["predictions"])
            np.testing.assert_allclose(got["anomaly_score"], expected["anomaly_score"], rtol=1e-6)
            assert (got["is_anomaly"] == expected["is_anomaly"]).all()

        nan = df.head(2).copy()
        nan.iloc[0, 3] = np.nan
        strings = df.head(2).astype(object)
        strings.iloc[1, 2] = "abc"
        bad = {
            "malformed JSON": b"{not json",
            "missing column": json.dumps({"dataframe_split": df.drop(columns=["px_3"]).to_dict(orient="split")}).encode(),
            "strings": json.dumps({"dataframe_split": strings.to_dict(orient="split")}).encode(),
            "NaN": json.dumps({"dataframe_split": nan.to_dict(orient="split")}).encode(),
            "empty frame": json.dumps({"dataframe_split": {"columns": list(df.columns), "data": []}}).encode(),
            "unknown output mode": json.dumps({"dataframe_split": df.head(1).to_dict(orient="split"), "params": {"output": "x"}}).encode(),
        }
        for name, body in bad.items():
            status, answer = _post(port, body)
            assert 400 <= status < 500, (name, status, answer)
            assert answer.get("message"), name
        assert "px_3" in _post(port, bad["NaN"])[1]["message"]

        # MLflow's schema enforcement drops columns the signature does not name (documented MLflow
        # behaviour): an extra column is ignored, never a 5xx.
        extra = df.head(3).assign(extra=1.0)
        status, answer = _post(port, json.dumps({"dataframe_split": extra.to_dict(orient="split")}).encode())
        assert status == 200 and len(answer["predictions"]) == 3

        # bounds in front of MLflow's parser: deep nesting (a RecursionError there: 500) and oversized bodies
        from aeops.serving.app import MAX_BODY_BYTES, MAX_JSON_DEPTH

        status, answer = _post(port, b"[" * 20_000 + b"]" * 20_000)
        assert status == 400 and f"at most {MAX_JSON_DEPTH}" in answer["message"], (status, answer)
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # declares the size, sends no body
        conn.putrequest("POST", "/invocations")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        conn.endheaders()
        answer = conn.getresponse()
        assert answer.status == 413 and "request body over" in json.loads(answer.read())["message"]
        conn.close()

        _fuzz_rest(port, list(df.columns))
        status, _ = _post(port, json.dumps({"dataframe_split": df.to_dict(orient="split")}).encode())
        assert status == 200  # still serving after the bad requests
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _fuzz_rest(port: int, features: list[str]) -> None:
    """Random bodies (garbage bytes, random frames in both JSON formats): never a 5xx."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6), st.text(max_size=3), st.none())
    cols = st.lists(st.sampled_from([*features[:3], "extra"]), max_size=4, unique=True).map(lambda c: c + features[3:])
    frame = cols.flatmap(lambda c: st.lists(st.lists(cell, min_size=len(c), max_size=len(c)), max_size=3).map(
        lambda rows: {"columns": c, "data": rows}))
    body = st.one_of(
        st.binary(max_size=40),
        frame.map(lambda f: json.dumps({"dataframe_split": f}).encode()),
        frame.map(lambda f: json.dumps({"inputs": [dict(zip(f["columns"], r)) for r in f["data"]]}).encode()),
    )

    @settings(max_examples=40, deadline=None)
    @given(body)
    def check(payload: bytes) -> None:
        status, _ = _post(port, payload)
        assert status < 500, payload[:200]

    check()


def test_batch_scoring_in_chunks_matches_predict(registry, tmp_path):
    root, _ = registry
    df = raw_split(str(root / "data/prepared"))[0]
    big = pd.concat([df] * 7, ignore_index=True)  # 2,520 rows
    big.to_csv(tmp_path / "in.csv", index=False)
    big.to_parquet(tmp_path / "in.parquet", index=False)
    from aeops.serving.batch import score_file

    uri = f"models:/{CFG.model_name}/1"
    expected = mlflow.pyfunc.load_model(uri).predict(big)
    for src in ("in.csv", "in.parquet"):
        summary = score_file(uri, str(tmp_path / src), str(tmp_path / f"{src}.out.parquet"), chunk_rows=1000, progress=False)
        assert summary.rows == len(big) and summary.warnings == []
        assert summary.flagged_share == pytest.approx(expected["is_anomaly"].mean())
        got = pd.read_parquet(tmp_path / f"{src}.out.parquet")
        np.testing.assert_allclose(got["anomaly_score"], expected["anomaly_score"], rtol=1e-5)
    broken = big.head(1500).astype(object)
    broken.iloc[1200, 4] = "oops"
    broken.to_csv(tmp_path / "broken.csv", index=False)
    with pytest.raises(DataError, match="rows 1000"):
        score_file(uri, str(tmp_path / "broken.csv"), str(tmp_path / "broken.parquet"), chunk_rows=1000, progress=False)
    assert not (tmp_path / "broken.parquet").exists()  # nothing half-written


def test_onnx_export_of_a_registered_version_scores_as_its_pyfunc(registry, tmp_path):
    """`aeops export --model models:/…/1`: the graph scores raw test rows as the registered pyfunc does."""
    import onnx
    import onnxruntime as ort

    from aeops.cli import main

    root, _ = registry
    assert main(["export", "--model", f"models:/{CFG.model_name}/1", "--output-dir", str(tmp_path / "onnx")]) == 0
    path = tmp_path / "onnx" / "model.onnx"
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert (props["aeops.model_name"], props["aeops.model_version"]) == (CFG.model_name, "1")
    df = raw_split(str(root / "data/prepared"))[0].head(300)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{CFG.model_name}/1")
    want = pyfunc.predict(df)
    got = ort.InferenceSession(str(path)).run(["anomaly_score", "is_anomaly"], {"pixels": df.to_numpy(np.float32)})
    np.testing.assert_allclose(got[0], want["anomaly_score"], rtol=1e-5)
    np.testing.assert_array_equal(got[1], want["is_anomaly"])
    assert float(props["aeops.threshold"]) == pyfunc.unwrap_python_model().scorer.threshold


def test_interrupted_promotion_keeps_production(registry, monkeypatch):
    client = mlflow.MlflowClient()
    promote(CFG, MLFLOW, version="1", force=True)
    calls = []
    real = mlflow.MlflowClient.set_registered_model_alias

    def dies_on_second_alias(self, name, alias, version):
        calls.append(alias)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed mid-promotion")
        return real(self, name, alias, version)

    monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_alias", dies_on_second_alias)
    with pytest.raises(KeyboardInterrupt):
        promote(CFG, MLFLOW, version="2", force=True)
    assert calls == ["previous", "production"]
    assert str(client.get_model_version_by_alias(CFG.model_name, "production").version) == "1"


def test_a_nan_model_is_never_registered(registry):
    from aeops.errors import AeopsError

    root, _ = registry
    path = root / CFG.metrics_file
    good = path.read_text()
    results = json.loads(good)
    results["model"]["recon_mse"] = float("nan")
    path.write_text(json.dumps(results))
    versions = len(mlflow.MlflowClient().search_model_versions(f"name='{CFG.model_name}'"))
    try:
        with pytest.raises(AeopsError, match="recon_mse is not a finite number"):
            register(CFG, MLFLOW)
    finally:
        path.write_text(good)
    assert len(mlflow.MlflowClient().search_model_versions(f"name='{CFG.model_name}'")) == versions


def test_monitor_says_ok_on_normal_rows_drift_on_shifted_ones_and_refuses_bad_input(registry, tmp_path, capsys):
    root, last = registry
    client = mlflow.MlflowClient()
    # the reference profile travels inside the registered model: the one evaluate wrote into the bundle
    scorer = mlflow.pyfunc.load_model(last["model_uri"]).unwrap_python_model().scorer
    assert scorer.profile.to_dict() == json.loads((root / "bundle" / "profile.json").read_text())
    df, split = raw_split(str(root / "data/prepared"))
    normal = df[split.is_anomaly == 0].reset_index(drop=True)
    normal.to_csv(tmp_path / "normal.csv", index=False)
    shifted = normal.copy()
    col = df.std().idxmax()
    shifted[col] += df[col].std()  # one feature shifted by one standard deviation
    shifted.to_parquet(tmp_path / "shifted.parquet", index=False)
    args = ["--params", str(root / "params.yaml"), "--model", last["model_uri"]]

    assert main(["monitor", str(tmp_path / "normal.csv"), *args]) == 0
    assert "monitor: ok:" in capsys.readouterr().out
    assert main(["monitor", str(tmp_path / "shifted.parquet"), *args]) == 1  # exit 1 on drift, for cron and CI
    out = capsys.readouterr().out
    assert "monitor: drift:" in out and f"driven by {col}" in out
    reports = sorted((root / "monitoring").glob("*.json"))
    assert len(reports) == 2 and len(list((root / "monitoring").glob("*.md"))) == 2
    result = json.loads(reports[-1].read_text()) if "shifted" in reports[-1].name else json.loads(reports[0].read_text())
    assert result["verdict"] == "drift" and result["features"][0]["feature"] == col
    assert result["model"] == {"uri": last["model_uri"], "name": CFG.model_name, "version": str(last["version"])}
    runs = client.search_runs([client.get_experiment_by_name("aeops-monitoring").experiment_id],
                              f"tags.model_version = '{last['version']}'")
    assert sorted(r.data.tags["verdict"] for r in runs) == ["drift", "ok"]
    assert all(r.data.tags["model_name"] == CFG.model_name for r in runs)

    scored = main(["score", str(tmp_path / "normal.csv"), str(tmp_path / "s.parquet"), *args])
    share = float(capsys.readouterr().out.split("flagged, ")[1].split("%")[0]) / 100
    per_row = pd.read_parquet(tmp_path / "s.parquet")
    assert scored == 0 and share == pytest.approx((per_row["out_of_range"] > 0).mean(), abs=1e-3) and share < 0.05
    assert per_row["score_percentile"].between(0, 100).all() and 40 < per_row["score_percentile"].median() < 60

    bad = {"strings.csv": normal.astype(object).assign(**{col: "x"}), "nan.csv": normal.assign(**{col: np.nan}),
           "columns.csv": normal.drop(columns=[col]), "empty.csv": normal.head(0)}
    for name, frame in bad.items():
        frame.to_csv(tmp_path / name, index=False)
        assert main(["monitor", str(tmp_path / name), *args]) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert len(list((root / "monitoring").glob("*.json"))) == 2  # nothing written for bad input


def test_an_image_models_anomaly_map_peaks_on_a_planted_defect(registry, tmp_path):
    """output='anomaly_map': the score per pixel; a bright 3×3 patch on a dark corner is where the map peaks."""
    from aeops.scoring.bundle import ModelBundle
    from aeops.scoring.preprocess import InputError
    from aeops.scoring.scorer import Scorer
    from aeops.serving.batch import score_file

    root, _ = registry
    df, split = raw_split(str(root / "data/prepared"))
    normal = df[np.asarray(split.labels) != 9].head(20).reset_index(drop=True)
    images = normal.to_numpy(np.float64).reshape(-1, 8, 8).copy()
    mask = np.zeros_like(images, dtype=bool)
    for i in range(len(images)):  # top-left or bottom-right corner: background in digits
        r, c = (0, 0) if i % 2 else (5, 5)
        mask[i, r : r + 3, c : c + 3] = True
    images[mask] = df.to_numpy().max()
    planted = pd.DataFrame(images.reshape(len(images), -1), columns=df.columns).astype(df.dtypes)
    uri = f"models:/{CFG.model_name}/1"
    pyfunc = mlflow.pyfunc.load_model(uri)
    maps = pyfunc.predict(planted, params={"output": "anomaly_map"})
    assert list(maps.columns) == list(df.columns) and (maps.to_numpy() >= 0).all()
    peak = maps.to_numpy().argmax(axis=1)
    inside = mask.reshape(len(mask), -1)[np.arange(len(peak)), peak]
    assert inside.mean() >= 0.9, inside
    # the score is the mean of the rule's top share of the (smoothed) map: exactly for one network; an
    # ensemble's mean of each member's top share is at least the top share of their mean map
    scores = pyfunc.predict(planted)["anomaly_score"].to_numpy()
    k = max(1, round(TOP * 64))
    top = np.sort(maps.to_numpy(), axis=1)[:, -k:].mean(axis=1)
    if ModelBundle.load(root / "bundle").members == 1:
        np.testing.assert_allclose(top, scores, rtol=1e-6)
    else:
        assert (top <= scores * (1 + 1e-9)).all()
    planted.to_parquet(tmp_path / "planted.parquet", index=False)
    score_file(uri, str(tmp_path / "planted.parquet"), str(tmp_path / "maps.parquet"), output="anomaly_map",
               chunk_rows=7, progress=False)
    np.testing.assert_allclose(pd.read_parquet(tmp_path / "maps.parquet").to_numpy(), maps.to_numpy(), rtol=1e-6)
    # heatmaps: per row its map over the image and the predicted mask (the map above the bundle's pixel threshold)
    from PIL import Image

    from aeops.errors import AeopsError

    heat = tmp_path / "heat"
    score_file(uri, str(tmp_path / "planted.parquet"), str(tmp_path / "scored.parquet"), heatmaps=heat, chunk_rows=7,
               progress=False)
    masks = sorted(heat.glob("*_mask.png"))
    assert len(masks) == 20 and len(list(heat.glob("*_heatmap.png"))) == 20
    threshold = pyfunc.unwrap_python_model().scorer.pixel_threshold
    assert threshold is not None and threshold > 0
    predicted = np.stack([np.asarray(Image.open(m)) > 0 for m in masks]).reshape(20, -1)
    assert np.array_equal(predicted, maps.to_numpy() > threshold)
    assert (predicted & mask.reshape(20, -1)).any(axis=1).mean() >= 0.9  # the planted patch is (partly) masked
    assert np.asarray(Image.open(heat / "row0000000_heatmap.png")).shape == (8, 8, 3)
    with pytest.raises(AeopsError, match=r"exists \(or is the input or the output\); name a new folder"):
        score_file(uri, str(tmp_path / "planted.parquet"), str(tmp_path / "again.parquet"), heatmaps=heat)
    # a folder of the same images as 8-bit PNGs (the digits' white, 16, is 255) scores as their pixels do
    folder = tmp_path / "pngs" / "sub"
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(np.round(img * 255 / 16).astype(np.uint8)).save(folder / f"{i:02d}.png")
    score_file(uri, str(tmp_path / "pngs"), str(tmp_path / "folder.parquet"), chunk_rows=6, heatmaps=tmp_path / "h2",
               progress=False)
    by_folder = pd.read_parquet(tmp_path / "folder.parquet")
    assert by_folder["file"].tolist() == [f"sub/{i:02d}.png" for i in range(20)] and len(by_folder.columns) > 2
    decoded = np.stack([np.asarray(Image.open(folder / f"{i:02d}.png")) for i in range(20)]).reshape(20, -1)
    direct = pyfunc.predict(pd.DataFrame(decoded * np.float32(16 / 255), columns=df.columns).astype(df.dtypes))
    np.testing.assert_allclose(by_folder["anomaly_score"], direct["anomaly_score"], rtol=1e-5)
    assert (tmp_path / "h2" / "sub" / "07_heatmap.png").is_file()  # named after the image, in its subfolder
    scorer = Scorer(ModelBundle.load(root / "bundle"))
    with pytest.raises(InputError, match="explain applies to table models"):
        scorer.score(planted, explain=2)
