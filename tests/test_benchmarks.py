"""The quality benchmark's pure helpers: JPEG rate measurement and the equal-rate comparison."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO
from warm import python


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quality():
    return _load("quality")


def _strokes(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = np.zeros((n, 28, 28))
    for img in x:
        r, c = rng.integers(4, 20, size=2)
        img[r : r + 8, c : c + 3] = 1.0
    return x.reshape(n, 784)


def test_tiled_jpeg_decodes_each_image_in_place_and_drops_header_cost(quality):
    x = _strokes(60)
    out = quality.jpeg_curve(x, qualities=(30, 95), per_row=7)
    tiled, single = out["mosaic"], out["per_image"]
    assert tiled[1]["psnr"] > 30  # a misplaced crop would give ~10 dB
    assert all(t["bits_per_pixel"] < s["bits_per_pixel"] / 2 for t, s in zip(tiled, single))
    assert tiled[0]["bits_per_pixel"] < tiled[1]["bits_per_pixel"] and tiled[0]["psnr"] < tiled[1]["psnr"]


def test_equal_rate_interpolates_in_log_rate_and_refuses_to_extrapolate(quality):
    jpeg = [{"bits_per_pixel": 0.5, "psnr": 20.0}, {"bits_per_pixel": 2.0, "psnr": 30.0}]
    points = [
        {"latent": z, "bits_per_pixel": bpp, "ae_quantized_psnr": 25.0, "pca_quantized_psnr": 22.0}
        for z, bpp in ((8, 1.0), (2, 0.1))
    ]
    inside, outside = quality.equal_rate(points, jpeg)
    assert inside["jpeg_psnr"] == pytest.approx(25.0)  # 1.0 is halfway between 0.5 and 2.0 in log rate
    assert outside["jpeg_psnr"] is None


def test_summary_renders_every_committed_result_and_names_missing_ones(tmp_path):
    summarize = _load("summarize")
    results = REPO / "benchmarks" / "results"
    for f in results.glob("*.json"):
        shutil.copy(f, tmp_path)
    (tmp_path / "serving.json").unlink()
    text = summarize.summarize(tmp_path)
    speed = json.loads((results / "training_speed.json").read_text())
    assert str(speed["models"]["mlp"]["lightning_over_raw"]) in text
    best = json.loads((results / "quality.json").read_text())["one_class"]
    assert f"**{best['variants'][best['best_variant']]['mean']:.4f}**" in text
    assert "## serving\n\nnot run" in text


def _run(config, s, seed, model, knn):
    base = {"auroc": 0.5, "auprc": 0.1}
    return {"config": config, "set": s, "seed": seed, "model": {"auroc": model, "auprc": model / 2},
            "knn_distance": {"auroc": knn, "auprc": knn / 2}, "isolation_forest": base, "pca": base}


def test_tabular_summary_averages_splits_then_sets_and_counts_wins():
    tabular = _load("tabular")
    runs = [_run("default", "a", 0, 0.9, 0.8), _run("default", "a", 1, 0.7, 0.8),  # a: 0.8 vs 0.8, no win
            _run("default", "b", 0, 1.0, 0.6), _run("default", "b", 1, 0.9, 0.6),  # b: 0.95 vs 0.6, a win
            _run("single network", "a", 0, 0.5, 0.8)]
    table = tabular.summarize(runs)
    assert table["aeops"]["mean_auroc"] == pytest.approx((0.8 + 0.95) / 2)
    assert table["aeops"]["per_set"]["a"]["auroc"][1] == pytest.approx(0.1)  # std over splits
    assert table["knn_distance"]["aeops_wins"] == 1 and table["pca"]["aeops_wins"] == 2
    assert table["aeops (single network)"]["sets"] == 1
    # a config meets the default only on its own splits: set a, split 0 (0.5 vs 0.9), never split 1 or set b
    single = table["aeops (single network)"]
    assert (single["paired_mean_auroc"], single["paired_default_auroc"]) == pytest.approx((0.5, 0.9))
    assert (single["paired_config_wins"], single["paired_default_wins"], single["paired_splits"]) == (0, 1, 1)
    text = tabular.markdown(table, 2)
    assert "| aeops | 0.875 |" in text and "| b | " in text and "0.950 ± 0.050" in text
    assert "| aeops (single network) | 0.500 | 0.900 | 0 / 1 | 1 (1) |" in text
    assert "| aeops (single network) | 0.500 | 0.800" not in text  # not in the unpaired table


@pytest.mark.slow
def test_tabular_benchmark_runs_the_real_pipeline_on_a_table_folder(tmp_path):
    """`make bench` runs benchmarks/tabular.py; here on one small table, sizes capped."""
    import os
    import subprocess

    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    x[:, 1] = x[:, 0] + 0.1 * rng.normal(size=300)
    y = np.zeros(300, dtype=int)
    y[:30] = 1
    x[:30] += 3.0
    (tmp_path / "tables").mkdir()
    pd.DataFrame(x, columns=list("abcde")).assign(k=1.0, is_anomaly=y).to_csv(tmp_path / "tables/toy.csv", index=False)
    env = {**os.environ, "AEOPS_CAP": "epochs=2,trials=2", "MLFLOW_TRACKING_URI": ""}
    out = tmp_path / "tabular.json"
    done = subprocess.run([python(), str(REPO / "benchmarks/tabular.py"), "--tables", str(tmp_path / "tables"),
                           "--splits", "1", "--jobs", "1", "--out", str(out), "--keep", str(tmp_path / "kept")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    run = result["runs"][0]
    assert run["set"] == "toy" and 0.5 < run["model"]["auroc"] <= 1.0 and run["latent_dim"] <= 2  # 5 features / 2
    assert {"residual alone", "residual + kNN distance", "standardised residual", "knn_distance"} <= set(run)
    weight = run["knn_weight"]  # auto's choice: 0 the residual alone, else the kNN term's weight
    assert weight in (0, 1, 2, 4) and run["score_choice"].startswith("residual + kNN distance" if weight else "residual (")
    if weight in (0, 1):  # the default's rule, rerun as an option, gives the default's numbers (×2, ×4: no option)
        assert run["residual alone" if weight == 0 else "residual + kNN distance"] == run["model"]
    assert f"runs per weight (0 = the residual alone): {weight:g}: 1." in result["table_md"]
    assert {"aeops, residual alone", "aeops, auto, kNN weight 1 only"} <= set(result["summary"])
    assert "| aeops |" in result["table_md"] and (tmp_path / "tabular.jsonl").is_file()
    kept = tmp_path / "kept" / "default" / "toy" / "0"  # the run as evaluate left it, before the rescoring
    assert (kept / "bundle").is_dir() and (kept / "data" / "prepared" / "test.parquet").is_file()
    assert json.loads((kept / "metrics" / "evaluate.json").read_text())["model"]["auroc"] == run["model"]["auroc"]
    assert yaml.safe_load((kept / "params.yaml").read_text())["evaluate"]["metrics_file"] == "metrics/evaluate.json"
    again = subprocess.run([python(), str(REPO / "benchmarks/tabular.py"), "--tables", str(tmp_path / "tables"),
                            "--splits", "1", "--jobs", "1", "--out", str(tmp_path / "again.json"), "--options", "none", "--rescore",
                            str(tmp_path / "kept")], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    rescored = json.loads((tmp_path / "again.json").read_text())["runs"][0]  # evaluate only: the same numbers
    assert {k: rescored[k] for k in ("model", "knn_distance", "pca")} == {k: run[k] for k in ("model", "knn_distance", "pca")}
    assert "standardised residual" not in rescored  # --options none: the default rule only
    params = yaml.safe_load((kept / "params.yaml").read_text())
    params["train"]["lr"] *= 2
    (kept / "params.yaml").write_text(yaml.safe_dump(params))
    stale = subprocess.run([python(), str(REPO / "benchmarks/tabular.py"), "--tables", str(tmp_path / "tables"),
                            "--splits", "1", "--jobs", "1", "--out", str(tmp_path / "stale.json"), "--rescore",
                            str(tmp_path / "kept")], env=env, capture_output=True, text=True, timeout=600)
    assert stale.returncode != 0 and "params section(s) ['train'] differ" in stale.stderr, stale.stderr[-2000:]


@pytest.mark.slow
def test_monitoring_benchmark_builds_a_model_and_counts_alarms(tmp_path):
    """`make bench` runs benchmarks/monitoring.py; here on digits, sizes capped."""
    import os
    import subprocess

    out = tmp_path / "monitoring.json"
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    done = subprocess.run([python(), str(REPO / "benchmarks/monitoring.py"), "--sets", "digits", "--epochs", "2",
                           "--batches", "4", "--shifted", "2", "--throughput-rows", "2000", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    digits = json.loads(out.read_text())["sets"]["digits"]
    assert digits["false_alarms"]["batches"] == 4 and digits["batch_rows"] == 500
    assert set(digits["detection"]) == {"anomalies 10 %", "anomalies 50 %", "rotated 15°", "noise σ 10 % of range"}
    assert digits["detection"]["noise σ 10 % of range"]["rate"] == 1.0  # every pixel moves: never missed
    assert digits["throughput"]["rows"] == 2000 and digits["throughput"]["rows_per_s"] > 0


@pytest.mark.slow
def test_compression_benchmark_measures_real_files_against_jpeg_and_webp(tmp_path):
    """`make bench` runs benchmarks/compression.py; here on the photo crops, one small model, one epoch."""
    import subprocess

    done = subprocess.run([python(), str(REPO / "benchmarks/compression.py"), "--sets", "photos", "--epochs", "1",
                           "--latents", "8", "--photo-crops", "300", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    photos = json.loads((tmp_path / "compression.json").read_text())["photos"]
    assert photos["image_shape"] == [32, 32, 3] and photos["test_images"] == 120  # 3 rows of 20 tiles per photo
    points = photos["aeops"]
    assert [p["error"] for p in points] == [1.0, 2.0, 4.0, 8.0]
    assert all(p["bytes"] > p["header_bytes"] > 0 for p in points)
    assert points[0]["bpp"] > points[-1]["bpp"]  # a larger error: a smaller file
    assert len(photos["jpeg"]) == len(photos["webp"]) == 8
    assert photos["jpeg"][0]["bpp"] < photos["jpeg"][-1]["bpp"] and photos["jpeg"][-1]["psnr"] > 30
    assert "| aeops | latent 8, error 1 |" in photos["table_md"]


def test_image_memory_benchmark_runs_the_stages_on_two_folder_sizes(tmp_path):
    """`make bench` runs benchmarks/image_memory.py; here on 60 and 240 tiny images, `prepare` only: each stage is
    a fresh process (train and evaluate are one call each of the functions the pipeline tests run)."""
    import subprocess

    done = subprocess.run([python(), str(REPO / "benchmarks/image_memory.py"), "--images", "60", "--size", "16",
                           "--stages", "prepare", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "image_memory.json").read_text())
    assert list(result["folders"]) == ["60", "240"] and result["folders"]["240"]["decoded_mb"] > 0
    assert list(result["large_over_small"]) == ["prepare"]
    assert result["folders"]["60"]["stages"]["prepare"]["peak_anon_mb"] > 20  # sampled from /proc, not zero
    summarize = _load("summarize")
    assert "| prepare |" in "\n".join(summarize.image_memory(result))


def test_mixed_benchmark_makes_messy_tables_that_prepare_reads_and_summarises_pairs(tmp_path):
    """`make bench` runs benchmarks/mixed.py; here its messy copy of a table goes through prepare, and the summary
    of made-up runs pairs each messy table with its clean original."""
    import pandas as pd

    from aeops.config import PrepareConfig
    from aeops.data.prepare import prepare

    mixed = _load("mixed")
    rng = np.random.default_rng(0)
    clean = pd.DataFrame(rng.normal(size=(200, 3)), columns=list("abc")).assign(is_anomaly=(np.arange(200) < 10).astype(int))
    mixed.messy(clean).to_csv(tmp_path / "t_messy.csv")  # with the index, as the benchmark writes it
    profile = prepare(PrepareConfig(source="table", path=str(tmp_path / "t_messy.csv"), anomaly_column="is_anomaly",
                                    normal_classes=None, output_dir=str(tmp_path / "prepared")))
    assert profile["column_roles"] == {"Unnamed: 0": "identifier", "customer_id": "identifier",
                                       "event_time": "excluded datetime", "segment": "categorical", "a": "numeric",
                                       "b": "numeric", "c": "numeric"}
    df = pd.read_csv(tmp_path / "t_messy.csv")
    assert 0.05 < df[list("abc")].isna().to_numpy().mean() < 0.15 and df["segment"].nunique() == 4

    def run(name: str, kind: str, seed: int, model: float) -> dict:
        scores = {"auroc": model, "auprc": 0.5}
        return {"set": name, "kind": kind, "seed": seed, "seconds": 10.0, "model": scores,
                "knn_distance": {"auroc": 0.7, "auprc": 0.4}, "isolation_forest": {"auroc": 0.8, "auprc": 0.4},
                "pca": {"auroc": 0.6, "auprc": 0.3}}

    summary = mixed.summarize([run("t", "clean", 0, 0.9), run("t", "clean", 1, 0.8), run("t_messy", "messy", 0, 0.84),
                               run("t_messy", "messy", 1, 0.84), run("credit", "mixed", 0, 0.75)])
    assert summary["sets"]["t"]["model"]["auroc"] == 0.85 and summary["messy_minus_clean"] == {"t": -0.01}
    assert summary["kinds"]["mixed"]["aeops wins"] == 0 and summary["kinds"]["clean"]["aeops wins"] == 1
    text = mixed.markdown(summary)
    assert "| t_messy | messy | 2 | 0.840 | 0.700 | 0.800 | 0.600 | 10.0 |" in text and "worst -0.010" in text


@pytest.mark.slow
def test_unlabelled_benchmark_trains_on_contaminated_rows_without_labels(tmp_path):
    """`make bench` runs benchmarks/unlabelled.py; here on one small table, one config, sizes capped."""
    import os
    import subprocess

    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    x[:, 1] = x[:, 0] + 0.1 * rng.normal(size=300)
    y = np.zeros(300, dtype=int)
    y[:30] = 1
    x[:30] += 3.0
    (tmp_path / "tables").mkdir()
    pd.DataFrame(x, columns=list("abcde")).assign(is_anomaly=y).to_csv(tmp_path / "tables/toy.csv", index=False)
    env = {**os.environ, "AEOPS_CAP": "epochs=2,trials=2", "MLFLOW_TRACKING_URI": ""}
    out = tmp_path / "unlabelled.json"
    done = subprocess.run([python(), str(REPO / "benchmarks/unlabelled.py"), "--tables", str(tmp_path / "tables"),
                           "--jobs", "1", "--configs", "default", "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "robust: each batch leaves out its worst 20%" in done.stderr  # no labels: robust training (auto)
    result = json.loads(out.read_text())
    run = result["runs"][0]
    held_out = np.random.default_rng(0).permutation(300)[180:]  # the seeded 60/40 split of split 0
    assert run["set"] == "toy" and run["test_rows"] == 120 and run["test_anomalies"] == int(y[held_out].sum())
    assert 0.5 < run["model"]["auroc"] <= 1 and 0.5 < run["isolation_forest"]["auroc"] <= 1
    assert 0.005 <= run["model"]["contamination"] <= 0.3  # the threshold came from the estimated contamination
    assert run["model"]["true_contamination"] == pytest.approx(run["test_anomalies"] / 120, abs=1e-4)  # rounded to 4 places
    overall = result["overall"]["aeops (default)"]
    assert overall["mean_auroc"] == run["model"]["auroc"] and overall["wins"] in (0, 1)
    assert "| aeops (default) |" in result["table_md"] and "| toy |" in result["table_md"]
    assert "## No labels, anomalies inside (1 tables" in "\n".join(_load("summarize").unlabelled(result))


@pytest.mark.slow
def test_explain_benchmark_ranks_the_planted_feature(tmp_path):
    """`make bench` runs benchmarks/explain.py; here on one small table without tune, epochs capped."""
    import os
    import subprocess

    import pandas as pd

    explain = _load("explain")
    rows = pd.DataFrame({"a": [0.0, 1.0], "b": [5.0, 5.0]})
    normal = pd.DataFrame({"a": np.linspace(0, 1, 101), "b": np.linspace(4, 6, 101)})
    planted, which = explain.plant(rows, normal, ["a", "b"], seed=0)
    for i, j in enumerate(which):  # the planted value lies half a 1-99 % span outside the normal rows' range
        col = "ab"[j]
        lo, hi = normal[col].quantile(0.01), normal[col].quantile(0.99)
        v = planted[col].iloc[i]
        assert v == pytest.approx(hi + 0.5 * (hi - lo)) or v == pytest.approx(lo - 0.5 * (hi - lo))
        assert planted["ab"[1 - j]].iloc[i] == rows["ab"[1 - j]].iloc[i]  # the other feature is untouched
    assert explain.ranks(np.array([[0.1, 0.9], [0.5, 0.2]]), np.array([0, 0])).tolist() == [1, 0]

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    x[:, 1] = x[:, 0] + 0.1 * rng.normal(size=400)
    (tmp_path / "tables").mkdir()
    pd.DataFrame(x, columns=list("abcd")).assign(is_anomaly=(np.arange(400) < 20).astype(int)).to_csv(
        tmp_path / "tables/toy.csv", index=False)
    env = {**os.environ, "AEOPS_CAP": "epochs=3", "MLFLOW_TRACKING_URI": ""}
    out = tmp_path / "explain.json"
    done = subprocess.run([python(), str(REPO / "benchmarks/explain.py"), "--tables", str(tmp_path / "tables"),
                           "--jobs", "1", "--configs", "tune off", "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    run = result["runs"][0]
    assert run["set"] == "toy" and run["features"] == 4 and run["rows"] > 0
    assert 0.5 < run["z-score"]["top1"] <= run["z-score"]["top3"] <= 1  # a value far outside its range stands out
    assert 0 <= run["aeops"]["top1"] <= run["aeops"]["top3"] <= 1 and run["rows_per_s"]["explain_3"] > 0
    assert result["overall"]["tune off"]["aeops"]["top1"] == run["aeops"]["top1"]
    assert "| toy (tune off) | 4 |" in result["table_md"]
    assert "## Attribution" in "\n".join(_load("summarize").explain(result))


@pytest.mark.slow
def test_localisation_benchmark_builds_a_masked_set_and_reads_evaluate_back(tmp_path):
    """`make bench` runs benchmarks/localisation.py; here on a generated texture, small crops, epochs capped."""
    import os
    import subprocess

    from PIL import Image
    from scipy.ndimage import gaussian_filter

    loc = _load("localisation")
    rng = np.random.default_rng(0)
    crop = np.clip(128 + 300 * gaussian_filter(rng.normal(size=(32, 32)), 2), 0, 255)
    for kind in loc.KINDS:  # each defect kind changes its masked pixels more than the rest
        out, mask = loc.plant(crop, kind, np.random.default_rng(1), donor=np.full((32, 32), 250.0))
        assert set(np.unique(mask)) == {0, 1} and 0 < mask.mean() < 0.5, kind
        change = np.abs(out - crop)
        assert change[mask == 1].mean() > 3 * change[mask == 0].mean() + 1, kind
    texture = np.clip(128 + 300 * gaussian_filter(rng.normal(size=(128, 128)), 2), 0, 255).astype(np.uint8)
    (tmp_path / "tex").mkdir()
    Image.fromarray(texture).save(tmp_path / "tex" / "brick.png")
    built = loc.build("brick", tmp_path / "set", size=16, train=30, test=8, textures=tmp_path / "tex")
    assert [len(list((built / d).glob("*.png"))) for d in ("good", "test_good", "defect", "masks")] == [30, 8, 8, 8]
    env = {**os.environ, "AEOPS_CAP": "epochs=2", "MLFLOW_TRACKING_URI": ""}
    out = tmp_path / "localisation.json"
    done = subprocess.run([python(), str(REPO / "benchmarks/localisation.py"), "--dir", str(tmp_path / "tex"),
                           "--textures", "brick", "--configs", "tune off", "--size", "16", "--train", "60",
                           "--test", "12", "--out", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    row = result["rows"][0]
    assert row["texture"] == "brick" and row["regions"] >= 12, row
    for key in ("image_auroc", "pixel_auroc", "aupro", "baseline_pixel_auroc", "baseline_aupro"):
        assert 0 <= row[key] <= 1, (key, row)
    assert row["scores_per_s"] > 0 and row["maps_per_s"] > 0
    assert "| tune off | brick |" in result["table_md"]
    assert "## Localisation" in "\n".join(_load("summarize").localisation(result))


def test_table_memory_benchmark_streams_the_larger_table(tmp_path):
    """`make bench` runs benchmarks/table_memory.py; here on 3,000 and 12,000 rows with prepare.max_rows 5,000:
    the small table is read whole, the large one streamed, and a second run is shown beside the first."""
    import subprocess

    def run(out: Path, *extra: str) -> dict:
        done = subprocess.run([python(), str(REPO / "benchmarks/table_memory.py"), "--rows", "3000", "--max-rows", "5000",
                               "--format", "folder", "--out", str(out), *extra], capture_output=True, text=True, timeout=600,
                              cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads((out / "table_memory.json").read_text())

    first = run(tmp_path / "a")
    small, large = (first["tables"][n]["stages"] for n in ("3000", "12000"))
    assert not small["prepare"]["streamed"] and large["prepare"]["streamed"]
    assert large["prepare"]["test_rows"] > 2000 and small["train"]["peak_anon_mb"] > 50  # sampled from /proc
    second = run(tmp_path / "b", "--compare", str(tmp_path / "a" / "table_memory.json"))
    assert second["compared"][0]["tables"] == first["tables"]
    lines = "\n".join(_load("summarize").table_memory(second))
    assert lines.count("| prepare |") == 2 and "max_rows 5,000" in lines
