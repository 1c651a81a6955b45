"""Mixed-type tables: column roles, the encoding (missing cells, levels), the layout-aware loss and score,
and one trained model whose evaluated, batch, pyfunc and REST scores agree row for row on raw rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_train

from aeops.config import EvaluateConfig, MlflowConfig, PrepareConfig, RegisterConfig
from aeops.data.prepare import prepare
from aeops.data.prepared import PreparedData, load_split
from aeops.data.roles import infer_roles
from aeops.errors import DataError
from aeops.models.layout import Layout
from aeops.scoring.columns import UNSEEN, ColumnSpec, TableColumns
from aeops.scoring.preprocess import InputError

MLFLOW = MlflowConfig()


def messy_table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Numbers, categories tied to them, missing cells, a bool, an id, a timestamp, free text and a saved index;
    the first 5 % of the rows (after shuffling) are anomalies: a level that contradicts the numbers."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = 2 * a + 0.3 * rng.normal(size=n)
    colour = np.where(a > 0.5, "red", np.where(a < -0.5, "blue", "green"))
    anomaly = rng.random(n) < 0.06
    colour = np.where(anomaly, np.where(colour == "red", "blue", "red"), colour)
    c = rng.gamma(2.0, size=n)
    c[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "Unnamed: 0": np.arange(n),
        "customer_id": [f"C{100000 + i}" for i in rng.permutation(n)],
        "a": a, "b": b, "c": c, "colour": colour, "member": rng.random(n) < 0.3,
        "event_time": pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 86400 * 30, n), unit="s"),
        "comment": [f"note {rng.integers(1e9)}" for _ in range(n)],
        "is_anomaly": np.where(anomaly, "yes", "no"),
    })


def test_roles_are_inferred_from_values_and_names():
    df = messy_table(200).assign(event_time=lambda d: d["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                 code=lambda d: (d["a"] > 0).astype(int), const="x")
    names = [c for c in df.columns if c != "is_anomaly"]
    roles = infer_roles(df, names, categorical=["code"], drop=["const"], datetime="exclude", max_levels=100,
                        min_frequency=0.01)
    got = {n: r.role for n, r in roles.items()}
    assert got == {"Unnamed: 0": "identifier", "customer_id": "identifier", "a": "numeric", "b": "numeric",
                   "c": "numeric", "colour": "categorical", "member": "categorical", "event_time": "excluded datetime",
                   "comment": "text", "code": "categorical", "const": "dropped"}
    assert "counts the rows" in roles["Unnamed: 0"].why and "ISO 8601" in roles["event_time"].why
    cyclic = infer_roles(df, ["event_time"], categorical=[], drop=[], datetime="cyclic", max_levels=100,
                         min_frequency=0.01)
    assert cyclic["event_time"].role == "datetime"
    with pytest.raises(DataError, match="'colour' has 3 levels.*prepare.max_levels = 2"):
        infer_roles(df, ["colour"], categorical=["colour"], drop=[], datetime="exclude", max_levels=2,
                    min_frequency=0.01)
    with pytest.raises(DataError, match="'a' holds numbers but also non-numeric values, e.g. 'n/a'"):
        infer_roles(df.assign(a=df["a"].astype(object).where(df.index != 7, "n/a")), ["a"], categorical=[], drop=[],
                    datetime="exclude", max_levels=100, min_frequency=0.01)


def test_encoding_imputes_flags_missing_cells_and_keeps_a_slot_for_unseen_levels():
    table = TableColumns([ColumnSpec("x", "numeric", fill=2.0, indicator=True),
                          ColumnSpec("k", "categorical", levels=["a", "b"], other=["z"]),
                          ColumnSpec("t", "datetime")])
    assert table.names == ["x", "x:missing", "k=a", "k=b", "k=(other)", f"k={UNSEEN}", "t:hour_sin", "t:hour_cos",
                           "t:weekday_sin", "t:weekday_cos"]
    df = pd.DataFrame({"x": [1.0, np.nan, 3.0, 4.0], "k": ["a", "z", "new", None],
                       "t": ["2024-01-01T06:00:00Z", "2024-01-03T18:00:00Z", None, "2024-01-07T00:00:00Z"]})
    rows = table.encode(df)
    assert rows.raw[:, :2].tolist() == [[1, 0], [2, 1], [3, 0], [4, 0]]  # the median fills, the flag says so
    assert rows.raw[:, 2:6].tolist() == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert rows.missing.tolist() == [0, 1, 1, 1] and rows.unseen.tolist() == [0, 0, 1, 0]
    np.testing.assert_allclose(rows.raw[0, 6:], [1, 0, 0, 1], atol=1e-12)  # 6 am on a Monday
    back = table.decode(rows.raw)
    assert back["x"].tolist()[::2] == [1.0, 3.0] and np.isnan(back["x"][1])
    assert back["k"].tolist()[:3] == ["a", "z", UNSEEN] and pd.isna(back["k"][3])
    assert back["t"][[0, 1, 3]].tolist() == ["2024-01-01T06:00:00Z", "2024-01-03T18:00:00Z", "2024-01-07T00:00:00Z"]
    assert pd.isna(back["t"][2])
    again = table.encode(back)  # what raw_split hands the served model encodes as prepare stored it
    np.testing.assert_allclose(again.raw, rows.raw, atol=1e-9)


def test_the_loss_ignores_imputed_cells_and_counts_a_categorical_column_once():
    layout = Layout.from_dict(TableColumns([ColumnSpec("x", "numeric", indicator=True),
                                            ColumnSpec("k", "categorical", levels=["a", "b", "c"])]).layout())
    assert layout.names == ["x", "k"]  # the missing flag is an input, not a feature
    x = torch.tensor([[0.5, 0.0, 1, 0, 0, 0], [0.0, 1.0, 0, 0, 0, 0]])  # row 2: x missing, k missing
    out = torch.tensor([[0.0, 0.0, 5, 0, 0, 0], [9.0, 1.0, 0, 0, 0, 0]])
    loss = layout.loss(out, x)
    ce = torch.nn.functional.cross_entropy(out[:1, 2:], torch.tensor([0]))
    assert loss.item() == pytest.approx(((0.5**2 + ce.item()) + 0.0) / 2 / 2)  # the 9.0 against the fill is ignored
    probs = layout.activate(out).numpy()
    assert probs[:, 2:].sum(1) == pytest.approx([1.0, 1.0])
    res = layout.group_residuals((x.numpy() - probs)[None], x.numpy())[0]
    assert res[1, 0] == 0.0 and res[0, 0] == pytest.approx(0.5)  # a missing value has no residual
    brier = np.sqrt(np.sum((x.numpy()[0, 2:] - probs[0, 2:]) ** 2))
    assert res[0, 1] == pytest.approx(brier) and res.shape == (2, 2) and res[1, 1] == 0.0  # k missing: no residual


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """One small model on a messy table: prepare → train → evaluate → register, in a temp project."""
    from aeops.evaluation.evaluate import evaluate
    from aeops.registry.register import register
    from aeops.training.train import train

    root = tmp_path_factory.mktemp("mixed")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        (root / "params.yaml").write_text("register: {}\n")
        messy_table().to_parquet(root / "messy.parquet", index=False)
        prepare(PrepareConfig(source="table", path="messy.parquet", normal_classes=None, anomaly_column="is_anomaly",
                              datetime="cyclic"))
        cfg = tiny_train(latent_dim=3)
        cfg.max_epochs, cfg.patience, cfg.lr = 30, 30, 3e-3
        train(cfg, MLFLOW)
        metrics = evaluate(EvaluateConfig(isolation_forest_trees=20), MLFLOW)
        register(RegisterConfig(), MLFLOW)
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        yield root, metrics


@pytest.mark.slow
def test_prepare_records_roles_and_the_model_learns_the_categories(model):
    root, metrics = model
    data = PreparedData(root / "data/prepared")
    roles = {k: v["role"] for k, v in data.meta.roles.items()}
    assert roles["customer_id"] == roles["Unnamed: 0"] == "identifier" and roles["comment"] == "text"
    assert roles["event_time"] == "datetime" and roles["colour"] == roles["member"] == "categorical"
    assert data.meta.feature_count == 7  # a, b, c, colour, member, event_time:hour, event_time:weekday
    assert "c:missing" in data.meta.feature_names and "colour=(unseen)" in data.meta.feature_names
    assert set(data.scaler["ignored_features"]) == {"Unnamed: 0", "customer_id", "comment"}
    run = mlflow.MlflowClient().search_runs(mlflow.get_experiment_by_name("aeops").experiment_id)[0]
    assert "colour: categorical" in run.data.tags["column_roles"] and "customer_id" in run.data.tags["dropped_columns"]
    assert metrics["model"]["auroc"] > 0.75  # the anomalies are a level that contradicts the numbers
    page = next((root / "reports").glob("*.html")).read_text()
    assert "Columns (prepare&#x27;s roles" in page or "Columns (prepare's roles" in page
    assert "<td>customer_id</td>" in page and "a distinct value in every row" in page
    # the highest-scored rows name their top features by column (a categorical one once), with shares
    import re

    named = re.findall(r"<td>((?:[a-z_:]+ \d+%(?:, )?){3})</td>", page)
    assert len(named) == 10 and all(n.split()[0] in {"a", "b", "c", "colour", "member", "event_time:hour",
                                                     "event_time:weekday"} for n in named), named


@pytest.mark.slow
def test_evaluated_batch_pyfunc_and_rest_scores_agree_on_raw_rows_with_gaps_and_new_levels(model, tmp_path):
    from aeops.registry.register import raw_split
    from aeops.scoring.bundle import ModelBundle
    from aeops.serving.batch import score_file
    from aeops.serving.http import wait_until_up

    root, _ = model
    bundle = ModelBundle.load(root / "bundle")
    test = load_split(root / "data/prepared", "test")
    evaluated = bundle.rule_scorer()(test.x, bundle.network().reconstruct(torch.from_numpy(test.x)).detach().numpy()[None])
    df, _ = raw_split(str(root / "data/prepared"))
    assert {"colour", "event_time", "c"} <= set(df.columns) and df["c"].isna().any()
    pyfunc = mlflow.pyfunc.load_model("models:/aeops-autoencoder/1")
    served = pyfunc.predict(df)
    np.testing.assert_allclose(served["anomaly_score"], evaluated, rtol=1e-4, atol=1e-6)
    assert (served["missing"] == df.isna().sum(axis=1)).all()

    odd = df.head(20).copy()
    odd.loc[odd.index[:5], "colour"] = "purple"  # never seen: scored, counted, no error
    odd.loc[odd.index[5:10], ["a", "c"]] = np.nan
    odd.loc[odd.index[10], ["a", "b", "c", "colour", "member"]] = None
    odd["customer_id"] = "C1"  # an identifier column is accepted and ignored
    out = pyfunc.predict(odd)
    assert out["unseen_levels"].tolist()[:6] == [1] * 5 + [0] and (out["missing"][5:10] >= 1).all()
    assert out["mostly_missing"].tolist()[10] and not out["mostly_missing"][:10].any()
    assert np.isfinite(out["anomaly_score"]).all()
    assert out["anomaly_score"][:5].mean() > served["anomaly_score"][:5].mean()  # an unseen level raises the score
    odd.to_csv(tmp_path / "odd.csv", index=False)
    summary = score_file("models:/aeops-autoencoder/1", str(tmp_path / "odd.csv"), str(tmp_path / "out.parquet"),
                         chunk_rows=7, progress=False)
    batch = pd.read_parquet(tmp_path / "out.parquet")
    assert summary.rows == 20
    np.testing.assert_allclose(batch["anomaly_score"], out["anomaly_score"], rtol=1e-5, atol=1e-6)
    assert batch["unseen_levels"].tolist() == out["unseen_levels"].tolist()

    # why: the top features of each row's score, the same from the bundle, the pyfunc and a batch file
    from aeops.scoring.scorer import Scorer

    why_rows = odd.copy()
    why_rows.loc[why_rows.index[12], "c"] = 40.0  # c is a gamma(2) column: 40 lies far beyond anything in training
    direct = Scorer(bundle).score(why_rows, explain=3)
    explained = pyfunc.predict(why_rows, params={"explain": 3})
    pd.testing.assert_frame_equal(explained.reset_index(drop=True), direct.reset_index(drop=True))
    shares = explained[[f"explain_{i}_share" for i in (1, 2, 3)]].to_numpy()
    assert (np.diff(shares, axis=1) <= 0).all() and (shares.sum(axis=1) <= 1 + 1e-9).all() and (shares >= 0).all()
    features = {"a", "b", "c", "colour", "member", "event_time:hour", "event_time:weekday"}
    assert set(explained[[f"explain_{i}_feature" for i in (1, 2, 3)]].to_numpy().ravel()) <= features
    planted = explained.iloc[12]
    assert planted["explain_1_feature"] == "c" and planted["explain_1_observed"] == "40", planted
    # what the model expected, in raw units: pulled back towards training values (an independent column with a
    # 3-d code is partly copied through, so not all the way)
    assert float(planted["explain_1_expected"]) < 40
    assert "colour" in explained.iloc[:5][[f"explain_{i}_feature" for i in (1, 2, 3)]].to_numpy().ravel()  # "purple"
    assert explained["explain_1_observed"].map(lambda v: isinstance(v, str) or pd.isna(v)).all()  # mixed: as text
    why_rows.to_csv(tmp_path / "why.csv", index=False)
    score_file("models:/aeops-autoencoder/1", str(tmp_path / "why.csv"), str(tmp_path / "why.parquet"), chunk_rows=7,
               explain=3, progress=False)
    why = pd.read_parquet(tmp_path / "why.parquet")
    assert why["explain_1_feature"].tolist() == explained["explain_1_feature"].tolist()
    np.testing.assert_allclose(why["explain_2_share"], explained["explain_2_share"], rtol=1e-5, atol=1e-7)
    with pytest.raises(InputError, match="explain must be a whole number from 1 to 7"):
        Scorer(bundle).score(why_rows, explain=8)
    from aeops.errors import AeopsError

    for where, message in ((tmp_path, "a folder is read as images, which needs an image model"), (tmp_path / "why.csv",
                                                                                   "heatmaps need an image model")):
        with pytest.raises(AeopsError, match=message):
            score_file("models:/aeops-autoencoder/1", str(where), str(tmp_path / "no.parquet"), progress=False,
                       heatmaps=tmp_path / "no-heat")
    assert not (tmp_path / "no.parquet").exists() and not (tmp_path / "no-heat").exists()

    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    mlflow.MlflowClient().set_registered_model_alias("aeops-autoencoder", "production", "1")
    server = subprocess.Popen([sys.executable, "-m", "aeops.cli", "serve", "--port", str(port)], cwd=root, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", server)
        body = json.dumps({"dataframe_split": json.loads(odd.to_json(orient="split", index=False))}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            rest = pd.DataFrame(json.loads(answer.read())["predictions"])
        np.testing.assert_allclose(rest["anomaly_score"], out["anomaly_score"], rtol=1e-5, atol=1e-6)
        assert rest["unseen_levels"].tolist() == out["unseen_levels"].tolist()
        for params, status in (({"explain": 3}, 200), ({"explain": 99}, 400)):
            body = json.dumps({"dataframe_split": json.loads(why_rows.to_json(orient="split", index=False)),
                               "params": params}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
            if status == 200:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    rest = pd.DataFrame(json.loads(answer.read())["predictions"])
                assert rest["explain_1_feature"].tolist() == explained["explain_1_feature"].tolist()
                np.testing.assert_allclose(rest["explain_1_share"], explained["explain_1_share"], rtol=1e-5)
            else:
                with pytest.raises(urllib.error.HTTPError) as err:
                    urllib.request.urlopen(request, timeout=60)
                assert err.value.code == 400 and "explain must be a whole number from 1 to 7" in err.value.read().decode()
        bad = odd.head(2).astype(object)
        bad.loc[bad.index[0], "b"] = "lots"
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"dataframe_split": json.loads(bad.to_json(orient="split", index=False))}).encode())
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=60)
        assert err.value.code == 400 and "'lots'" in err.value.read().decode()  # the signature refuses it first
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


@pytest.mark.slow
def test_bad_rows_are_one_line_errors_and_onnx_export_refuses_a_mixed_model(model, tmp_path):
    from aeops.scoring.bundle import ModelBundle
    from aeops.scoring.scorer import Scorer
    from aeops.serving.onnx_export import export_onnx

    root, _ = model
    scorer = Scorer(ModelBundle.load(root / "bundle"))
    row = pd.DataFrame({"a": [np.inf], "b": [1.0], "c": [1.0], "colour": ["red"], "member": [True],
                        "event_time": ["2024-01-01T00:00:00Z"]})
    with pytest.raises(InputError, match="column 'a' has infinite values"):
        scorer.score(row)
    with pytest.raises(InputError, match="column 'event_time' has values that are not ISO 8601"):
        scorer.score(row.assign(a=0.0, event_time="yesterday"))
    with pytest.raises(InputError, match="output='anomaly_map' applies to image models; for a table model use explain"):
        scorer.score(row.assign(a=0.0), output="anomaly_map")
    recon = scorer.score(row.assign(a=0.0), output="reconstruction")
    assert list(recon.columns) == ["a", "b", "c", "colour", "member", "event_time"]
    assert recon["colour"][0] in ("red", "green", "blue")  # the most likely level, not a probability
    from aeops.monitoring.monitor import frame_check
    from aeops.registry.register import raw_split

    df = raw_split(str(root / "data/prepared"))[0]
    calm = frame_check(scorer, df)
    assert calm["features_drifted"] == 0, calm
    shifted = df.assign(colour=np.where(np.arange(len(df)) % 3 == 0, "purple", df["colour"]))
    shifted.loc[shifted.index[::2], "c"] = np.nan  # c was missing in 10 % of the training rows, now in half
    drift = frame_check(scorer, shifted)
    drifted = [f["feature"] for f in drift["features"] if f["drifted"]]
    assert drift["verdict"] != "ok" and {"colour=(unseen)", "c:missing"} <= set(drifted), drifted
    # what the flagged rows' scores rest on, split as explain splits them: all 7 features, shares summing to 1
    why = drift["flagged"]["features"]
    assert len(why) == 7 and sum(f["mean_share"] for f in why) == pytest.approx(1.0)
    assert "colour" in [f["feature"] for f in why[:2]], why  # the unseen level carries the flagged rows
    from aeops.monitoring.monitor import summary_line
    from aeops.monitoring.report import markdown

    assert f"flagged rows rest on {why[0]['feature']} {why[0]['mean_share']:.0%}" in summary_line(drift)
    assert "## What the flagged rows' scores rest on" in markdown(drift | {"model": {"uri": "u", "name": "n",
                                                                                     "version": "1"},
                                                                           "data": "d", "checked_at": "t"})
    with pytest.raises(DataError, match="cannot be exported as one ONNX graph: its mixed-type table encoding"):
        export_onnx(str(root / "bundle"), str(tmp_path / "onnx"))
    assert not (tmp_path / "onnx").exists()


def _readme_spark_block() -> str:
    import re

    from conftest import REPO

    found = [b for b in re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
             if "spark_udf" in b]
    assert len(found) == 1, "README: one python block with spark_udf (Running on a cluster)"
    return "\n".join(line.removeprefix("   ") for line in found[0].splitlines())


@pytest.mark.slow
def test_the_readme_spark_block_scores_a_parquet_folder_as_aeops_score(model, tmp_path, monkeypatch):
    """The README's Spark block, as written, on local[2]: the same columns and numbers as `aeops score`."""
    import os
    import shutil

    from aeops.serving.batch import score_file

    if shutil.which("java") is None:
        if os.environ.get("AEOPS_CI"):
            pytest.fail("java is missing: .ci/run installs default-jre-headless")
        pytest.skip("Spark needs Java (Debian: default-jre-headless)")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        if os.environ.get("AEOPS_CI"):
            raise
        pytest.skip("pyspark is a dev dependency (make setup)")
    mlflow.MlflowClient().set_registered_model_alias("aeops-autoencoder", "production", "1")
    from aeops.registry.register import raw_split

    root, _ = model
    rows = raw_split(str(root / "data/prepared"))[0]  # the test split as `aeops sample` writes it: levels and times as text
    assert rows.isna().any().any() and rows["member"].map(type).eq(str).all()
    rows["row"], rows["customer_id"] = np.arange(len(rows)), [f"C{i}" for i in range(len(rows))]
    (tmp_path / "rows").mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(rows)), 3)):  # a folder of Parquet files, as a data lake exports
        rows.iloc[part].to_parquet(tmp_path / "rows" / f"part-{i}.parquet", index=False)
    rows.to_parquet(tmp_path / "all.parquet", index=False)
    score_file("models:/aeops-autoencoder@production", str(tmp_path / "all.parquet"), str(tmp_path / "want.parquet"),
               progress=False)
    want = pd.read_parquet(tmp_path / "want.parquet")
    monkeypatch.chdir(tmp_path)
    exec(compile(_readme_spark_block(), "README.md (Spark block)", "exec"), {})
    from pyspark.sql import SparkSession

    SparkSession.builder.getOrCreate().stop()
    got = pd.read_parquet(tmp_path / "scores").sort_values("row").reset_index(drop=True)
    assert len(got) == len(want) and set(want.columns) <= set(got.columns)
    assert (got["customer_id"] == rows["customer_id"]).all()  # the rows' own columns stay beside the scores
    for c in want.columns:
        if pd.api.types.is_float_dtype(want[c]):
            np.testing.assert_allclose(got[c], want[c], rtol=1e-6, atol=1e-9, err_msg=c)
        else:
            assert got[c].tolist() == want[c].tolist(), c
