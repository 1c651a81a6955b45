"""Bad input, as a hostile new user gives it: one parametrised test per class of mistake.

Every case asserts the exit code, a one-line message naming the problem, and that no input file and
no unrelated output changed (every file under the case's folder and the project's outputs are hashed
before and after). Classes: files, values, params and arguments, requests (the REST guard), crafted
containers (.aez, image files), resource bounds (peak RSS of a subprocess), interruptions,
environment. Add a case to its class's list.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, tiny_train

from aeops import cli
from aeops.compression import container
from aeops.config import EvaluateConfig, MlflowConfig, PrepareConfig, RegisterConfig

pytestmark = pytest.mark.slow
MODEL = "models:/aeops-autoencoder/1"


def _hashes(*roots: Path) -> dict[str, str]:
    """Every file under `roots` (names and bytes); mlflow.db is left out (reads may touch its journal)."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            if f.name.startswith("mlflow.db"):
                continue
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained, evaluated and registered digits model (version 1, alias production) and its params file."""
    from aeops.data.prepare import prepare
    from aeops.evaluation.evaluate import evaluate
    from aeops.registry.promote import promote
    from aeops.registry.register import register
    from aeops.training.train import train

    root = tmp_path_factory.mktemp("bad-input")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        (root / "params.yaml").write_text(yaml.safe_dump({"tune": {"enabled": False}}))
        prepare(PrepareConfig())
        train(tiny_train(), MlflowConfig())
        evaluate(EvaluateConfig(isolation_forest_trees=10), MlflowConfig())
        register(RegisterConfig(), MlflowConfig())
        promote(RegisterConfig(), MlflowConfig())
        cli.main(["sample", "rows.csv", "--rows", "40"])
        pd.read_csv(root / "rows.csv").to_parquet(root / "rows.parquet", index=False)
    return root


@dataclass
class Case:
    """argv of `aeops` (after the command's files are made by `setup` in the case folder) and what stderr must say."""

    id: str
    argv: list[str]
    says: str
    setup: Callable[[Path, Path], None] | None = None
    code: int = 2
    env: dict[str, str] | None = None


def _run(case: Case, project: Path, tmp_path: Path, capsys, monkeypatch) -> str:
    """Run the case in-process from its own folder; check the code, one line, and that nothing changed."""
    monkeypatch.chdir(tmp_path)
    for key, value in (case.env or {}).items():
        monkeypatch.setenv(key, value)
    (tmp_path / "bystander.txt").write_text("a user's file that no command may touch\n")
    if case.setup:
        case.setup(tmp_path, project)
    watched = (tmp_path, project / "data", project / "bundle", project / "models", project / "registry")
    before = _hashes(*watched)
    argv = [a.replace("{project}", str(project)) for a in case.argv]
    try:
        code = cli.main([*argv, "--params", str(project / "params.yaml")])
    except SystemExit as exit_:  # argparse refusals
        code = exit_.code
    err = capsys.readouterr().err.strip()
    # argparse's refusals print the usage first (its own lines) and then the one error line
    lines = [line for line in err.splitlines() if not line.startswith(("warning:", "usage:", " "))]
    assert code == case.code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert case.says in lines[0], lines[0]
    assert _hashes(*watched) == before, "an input or an unrelated output changed"
    return lines[0]


# ------------------------------------------------------------------------------------------ files
def _folder(name: str) -> Callable[[Path, Path], None]:
    def setup(tmp: Path, project: Path) -> None:
        (tmp / name).mkdir()
        (tmp / name / "part-0000.parquet").write_bytes(b"Spark's part file")
    return setup


def _copy(name: str, src: str = "rows.parquet") -> Callable[[Path, Path], None]:
    def setup(tmp: Path, project: Path) -> None:
        shutil.copy(project / src, tmp / name)
    return setup


def _link(tmp: Path, project: Path) -> None:
    shutil.copy(project / "rows.parquet", tmp / "own.parquet")
    (tmp / "alias.parquet").symlink_to(tmp / "own.parquet")


def _write(name: str, content: Callable[[Path], object]) -> Callable[[Path, Path], None]:
    def setup(tmp: Path, project: Path) -> None:
        data = content(project)
        if isinstance(data, pd.DataFrame):
            (data.to_parquet if name.endswith(".parquet") else data.to_csv)(tmp / name, index=False)
        else:
            (tmp / name).write_bytes(data if isinstance(data, bytes) else str(data).encode())
    return setup


def _rows(project: Path) -> pd.DataFrame:
    return pd.read_csv(project / "rows.csv")


FILE_CASES = [
    Case("score-onto-a-folder", ["score", "--model", MODEL, "{project}/rows.csv", "out.parquet"],
         "out.parquet: is a folder", _folder("out.parquet")),
    Case("sample-onto-a-folder", ["sample", "dir.csv"], "dir.csv: is a folder", _folder("dir.csv")),
    Case("score-over-its-input", ["score", "--model", MODEL, "own.parquet", "own.parquet"],
         "is the input file", _copy("own.parquet")),
    Case("score-over-a-link-to-its-input", ["score", "--model", MODEL, "own.parquet", "alias.parquet"],
         "is the input file", _link),
    Case("score-a-missing-file", ["score", "--model", MODEL, "nope.csv", "out.parquet"], "nope.csv: need an existing file"),
    Case("score-a-text-file", ["score", "--model", MODEL, "bystander.txt", "out.parquet"], "ending in .csv, .parquet"),
    Case("score-into-csv", ["score", "--model", MODEL, "{project}/rows.csv", "out.csv"], "name it *.parquet"),
    Case("score-an-empty-table", ["score", "--model", MODEL, "empty.csv", "out.parquet"], "empty.csv: no rows to score",
         _write("empty.csv", lambda p: _rows(p).head(0))),
    Case("score-a-missing-column", ["score", "--model", MODEL, "short.csv", "out.parquet"], "missing inputs ['px_3']",
         _write("short.csv", lambda p: _rows(p).drop(columns="px_3"))),
    Case("score-a-datetime-column", ["score", "--model", MODEL, "dates.parquet", "out.parquet"], "datetime",
         _write("dates.parquet", lambda p: _rows(p).assign(px_0=pd.Timestamp("2026-01-01")))),
    Case("score-binary-garbage", ["score", "--model", MODEL, "junk.parquet", "out.parquet"], "junk.parquet: cannot be read as Parquet",
         _write("junk.parquet", lambda p: bytes(range(256)) * 4)),
    Case("monitor-a-missing-column", ["monitor", "--model", MODEL, "short.csv"], "missing inputs ['px_3']",
         _write("short.csv", lambda p: _rows(p).drop(columns="px_3"))),
    Case("monitor-an-empty-table", ["monitor", "--model", MODEL, "empty.csv"], "no rows to check",
         _write("empty.csv", lambda p: _rows(p).head(0))),
]


@pytest.mark.parametrize("case", FILE_CASES, ids=lambda c: c.id)
def test_bad_files(case: Case, project: Path, tmp_path: Path, capsys, monkeypatch):
    line = _run(case, project, tmp_path, capsys, monkeypatch)
    assert "Failed to enforce schema" not in line and "–-1" not in line  # the cause, not MLflow's frame
    if "onto-a-folder" in case.id:
        assert (tmp_path / case.argv[-1] / "part-0000.parquet").is_file()


def test_a_score_that_fails_midway_leaves_no_output(project: Path, tmp_path: Path, capsys, monkeypatch):
    """The second chunk is refused: nothing is written, not even the first chunk's scores."""
    rows = _rows(project)
    bad = pd.concat([rows, rows.assign(px_0="x")], ignore_index=True)
    bad.to_csv(tmp_path / "half.csv", index=False)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["score", "--model", MODEL, "half.csv", "out.parquet", "--chunk-rows", str(len(rows)),
                     "--params", str(project / "params.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and f"rows {len(rows)}–{2 * len(rows) - 1}" in err and not (tmp_path / "out.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.csv"]  # no temporary file left either


# ------------------------------------------------------------------------------------------ values
def _table(values: dict[str, tuple[slice, object]], n: int = 200, *, index: bool = False,
           suffix: str = "csv") -> Callable[[Path, Path], None]:
    """A table with an anomaly column (every 10th row, from row 0); `values` set cells: {column: (rows, value)}.

    `index=True` writes pandas' index too (a CSV's first column 'Unnamed: 0' when read back)."""
    def setup(tmp: Path, project: Path) -> None:
        rng = np.random.default_rng(0)
        df = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
        df["is_anomaly"] = (np.arange(n) % 10 == 0).astype(int)
        for column, (rows, value) in values.items():
            if not isinstance(value, float):
                df[column] = df[column].astype(object)
            df.loc[df.index[rows], column] = value
        if isinstance(values.get("b", (None, None))[1], pd.Timestamp):
            df["b"] = pd.to_datetime(df["b"])
        df.to_parquet(tmp / "t.parquet", index=False) if suffix == "parquet" else df.to_csv(tmp / "t.csv", index=index)
        (tmp / "params.yaml").write_text(yaml.safe_dump({"prepare": {
            "source": "table", "path": f"t.{suffix}", "normal_classes": None, "anomaly_column": "is_anomaly"}}))
    return setup


VALUE_CASES = [
    Case("huge-values-overflow-the-scaler", ["prepare"], "'b' holds values too large to scale",
         _table({"b": (slice(0, 40), 1e200)})),
    # row 0 is an anomaly: never in train, so the scaler is fitted without it and the value overflows float32
    Case("one-value-overflows-float32", ["prepare"], "'c' = 1e+39", _table({"c": (slice(0, 1), 1e39)})),
    Case("a-two-row-table", ["prepare"], "2 rows are too few", _table({}, n=2)),
    Case("an-empty-column", ["prepare"], "column 'a' is entirely missing", _table({"a": (slice(None), np.nan)})),
    Case("text-in-a-feature", ["prepare"], "non-numeric values", _table({"a": (slice(3, 4), "ten")})),
    Case("infinite-cells", ["prepare"], "column 'a' has infinite values", _table({"a": (slice(3, 4), np.inf)})),
]


def _run_alone(case: Case, tmp_path: Path, capsys, monkeypatch) -> None:
    """A case whose folder is its own project (its params.yaml): the code, one line, nothing changed or written."""
    case.setup(tmp_path, tmp_path)
    monkeypatch.chdir(tmp_path)
    before = _hashes(tmp_path)
    code = cli.main([*case.argv, "--params", str(tmp_path / "params.yaml")])
    err = capsys.readouterr().err.strip()
    assert code == case.code and len(err.splitlines()) == 1 and case.says in err, err
    assert _hashes(tmp_path) == before and not (tmp_path / "data" / "prepared").exists()


@pytest.mark.parametrize("case", VALUE_CASES, ids=lambda c: c.id)
def test_bad_values(case: Case, tmp_path: Path, capsys, monkeypatch):
    _run_alone(case, tmp_path, capsys, monkeypatch)


# ------------------------------------------------------------------------------------------ params
def _params(text: str) -> Callable[[Path, Path], None]:
    def setup(tmp: Path, project: Path) -> None:
        (tmp / "params.yaml").write_text(text)
    return setup


PARAM_CASES = [  # run against the case folder's own params.yaml
    Case("yaml-syntax", ["prepare"], "not valid YAML at line 3, column 7", _params("prepare:\n  seed: 1\n   bad: 2\n")),
    Case("yaml-flow", ["prepare"], "at line 3, column 1: expected ',' or ']'", _params("prepare:\n  normal_classes: [1, 2\n")),
    Case("unknown-key", ["prepare"], "unknown key 'prepare.sed'", _params("prepare: {sed: 1}\n")),
    Case("not-a-mapping", ["prepare"], "top level must be a mapping", _params("- prepare\n")),
    Case("out-of-range", ["prepare"], "prepare.val_fraction", _params("prepare: {val_fraction: 0.9}\n")),
]
ARG_CASES = [  # run in the trained project
    Case("chunk-rows-zero", ["score", "{project}/rows.csv", "out.parquet", "--chunk-rows", "0"], "not a whole number ≥ 1"),
    Case("sample-rows-zero", ["sample", "s.csv", "--rows", "0"], "not a whole number ≥ 1"),
    Case("port-flag-out-of-range", ["serve", "--port", "99999"], "not a port number (1–65535)"),
    Case("port-env-out-of-range", ["serve"], "AEOPS_SERVE_PORT = '99999': not a port number", env={"AEOPS_SERVE_PORT": "99999"}),
    Case("port-env-not-a-number", ["serve"], "AEOPS_SERVE_PORT = 'http'", env={"AEOPS_SERVE_PORT": "http"}),
    Case("port-env-superscript-digit", ["serve"], "AEOPS_SERVE_PORT = '²'", env={"AEOPS_SERVE_PORT": "²"}),
    Case("compress-error-zero", ["compress", "in", "out.aez", "--error", "0"], "not a number of gray levels"),
    Case("compress-error-tiny", ["compress", "in", "out.aez", "--error", "1e-300"], "in [0.01, 64]"),
]


@pytest.mark.parametrize("case", PARAM_CASES, ids=lambda c: c.id)
def test_bad_params(case: Case, tmp_path: Path, capsys, monkeypatch):
    _run_alone(case, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("case", ARG_CASES, ids=lambda c: c.id)
def test_bad_arguments(case: Case, project: Path, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setattr(cli.os, "execvpe", lambda *a: pytest.fail("a refused serve must not start a server"))
    _run(case, project, tmp_path, capsys, monkeypatch)


def test_a_port_in_use_is_one_line(project: Path, tmp_path: Path, capsys, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        case = Case("port-in-use", ["serve", "--port", port], f"cannot serve on 127.0.0.1:{port}")
        monkeypatch.setattr(cli.os, "execvpe", lambda *a: pytest.fail("a refused serve must not start a server"))
        _run(case, project, tmp_path, capsys, monkeypatch)


# ------------------------------------------------------------------------------------------ requests
def _asgi(body_chunks: list[bytes], declared: int | None = None,
          content_type: bytes = b"application/json") -> tuple[int, dict | None, bytes | None]:
    """POST through aeops.serving.app.guarded to an app that echoes the body: (status, refusal JSON, body it saw)."""
    import asyncio

    from aeops.serving.app import guarded

    seen, sent = [], []

    async def inner(scope, receive, send):
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = [{"type": "http.request", "body": c, "more_body": i < len(body_chunks) - 1} for i, c in enumerate(body_chunks)]

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    headers = [(b"content-type", content_type)] + ([] if declared is None else [(b"content-length", str(declared).encode())])
    asyncio.run(guarded(inner)({"type": "http", "method": "POST", "path": "/invocations", "headers": headers},
                               receive, send))
    status = sent[0]["status"]
    return status, None if status == 200 else json.loads(sent[1]["body"]), seen[0] if seen else None


def test_bad_requests_are_refused_in_front_of_mlflows_parser():
    from aeops.serving.app import MAX_BODY_BYTES, MAX_JSON_DEPTH

    deep = b"[" * 20_000 + b"]" * 20_000
    status, answer, seen = _asgi([deep[:7000], deep[7000:]])
    assert (status, seen) == (400, None) and answer["message"].startswith("JSON nested 20000 levels deep, at most 64")
    status, answer, _ = _asgi([b"{}"], declared=MAX_BODY_BYTES + 1)  # refused on the header, body unread
    assert status == 413 and "request body over 67,108,864 bytes" in answer["message"]
    status, answer, _ = _asgi([b" " * (MAX_BODY_BYTES // 2)] * 3)  # no length declared: counted as it streams
    assert status == 413
    ok = json.dumps({"dataframe_split": {"columns": ["a"], "data": [["[[[["] * 1] * 500}}).encode()
    assert _asgi([ok[:100], ok[100:]]) == (200, None, ok)  # brackets inside strings do not count; body replayed whole
    edge = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert _asgi([edge])[0] == 200 and _asgi([b"[" + edge + b"]"])[0] == 400
    # an unterminated string of escaped quotes: a regex for JSON strings rescans it from every quote
    # (hours for 1 MB); the scan is linear, and the 65 brackets before it still count
    status, answer, _ = _asgi([b"[" * 65 + b'"' + b'\\"' * 500_000])
    assert status == 400 and "nested 65 levels" in answer["message"]
    assert _asgi([b"a,b\n" + b"[" * 100 + b",1\n"], content_type=b"text/csv")[0] == 200  # CSV is not JSON


# ------------------------------------------------------------------------------------------ crafted containers
def _aez(path: Path, *, rows: int = 1, words: int = 2, **fields: object) -> None:
    """A well-formed .aez file with header fields overridden."""
    header = {"model": {"name": "aeops-autoencoder", "version": "1", "fingerprint": "0" * 16},
              "coder": {"recipe": 1, "constriction": "0"}, "image_shape": [1, 8, 8], "error": 2.0, "count": 1,
              "names": ["a.png"], "sizes": None} | fields
    with path.open("wb") as fh:
        container.write_header(fh, header)
        container.write_segment(fh, rows, np.zeros(words, np.uint32))


def _raw_header(body: bytes, declared: int | None = None) -> bytes:
    size = len(body) if declared is None else declared
    return container.MAGIC + bytes([container.FORMAT]) + struct.pack("<II", size, zlib.crc32(body)) + body


def _crafted(make: Callable[[Path], None]) -> Callable[[Path, Path], None]:
    def setup(tmp: Path, project: Path) -> None:
        make(tmp / "x.aez")
    return setup


def _images(*names: str) -> Callable[[Path, Path], None]:
    """A folder `imgs` of 8 × 8 gray PNGs: a.png and `names`."""
    def setup(tmp: Path, project: Path) -> None:
        from PIL import Image

        (tmp / "imgs").mkdir()
        for name in ("a.png", *names):
            Image.new("L", (8, 8), 7).save(tmp / "imgs" / name, format="PNG")
    return setup


def _deep_json(path: Path) -> None:
    text = b"[" * 20_000 + b"]" * 20_000  # within the unpacking bounds; deeper than Python's parser recurses
    path.write_bytes(_raw_header(lzma_raw(text)))


def lzma_raw(data: bytes) -> bytes:
    import lzma

    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 1}])


def _big_segment(path: Path) -> None:
    _aez(path)
    with path.open("r+b") as fh:  # the first segment's word count: 2^32 - 1
        fh.seek(-(8 + 12), 2)
        fh.write(struct.pack("<III", 1, 0xFFFFFFFF, 0))


CONTAINER_CASES = [
    Case("aez-huge-image-sizes", ["decompress", "x.aez", "out"], "65535×65535 pixels",
         _crafted(lambda p: _aez(p, sizes=[[65535, 65535]]))),
    Case("aez-nul-in-a-name", ["decompress", "x.aez", "out"], "unsafe or empty file name 'a\\x00b.png'",
         _crafted(lambda p: _aez(p, names=["a\x00b.png"]))),
    Case("aez-300-character-name", ["decompress", "x.aez", "out"], "too long for a file system",
         _crafted(lambda p: _aez(p, names=["n" * 300 + ".png"]))),
    Case("aez-file-and-folder", ["decompress", "x.aez", "out"], "'x.png' is both a file and a folder",
         _crafted(lambda p: _aez(p, count=2, names=["x.jpg", "x.png/y.png"], rows=2))),
    Case("aez-tiny-error", ["decompress", "x.aez", "out"], "error 1e-300 is not a number of gray levels in [0.01, 64]",
         _crafted(lambda p: _aez(p, error=1e-300))),
    Case("aez-escaping-name", ["decompress", "x.aez", "out"], "unsafe or empty file name '../evil.png'",
         _crafted(lambda p: _aez(p, names=["../evil.png"]))),
    Case("aez-header-larger-than-file", ["decompress", "x.aez", "out"], "declares 4,294,967,295 bytes",
         _crafted(lambda p: p.write_bytes(_raw_header(b"abc", declared=0xFFFFFFFF)))),
    Case("aez-deeply-nested-header", ["decompress", "x.aez", "out"], "damaged header", _crafted(_deep_json)),
    Case("aez-more-images-than-bytes", ["decompress", "x.aez", "out"], "cannot fit in the",
         _crafted(lambda p: _aez(p, count=20_000, names=[f"{i}.png" for i in range(20_000)]))),
    Case("aez-not-an-aez", ["decompress", "bystander.txt", "out"], "not an aeops compressed file"),
    Case("compress-a-name-decompress-refuses", ["compress", "imgs", "x.aez", "--model", MODEL],
         "unsafe or empty file name 'b\\x01.png' (rename it: decompress could not write it back)", _images("b\x01.png")),
]


@pytest.mark.parametrize("case", CONTAINER_CASES, ids=lambda c: c.id)
def test_crafted_containers(case: Case, project: Path, tmp_path: Path, capsys, monkeypatch):
    _run(case, project, tmp_path, capsys, monkeypatch)
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil.png").exists()


def test_a_segment_declaring_more_words_than_the_file_holds_is_refused(tmp_path: Path):
    _big_segment(tmp_path / "x.aez")
    with (tmp_path / "x.aez").open("rb") as fh:
        header = container.read_header(fh, "x.aez")
        with pytest.raises(container.DataError, match="a segment declares 1 images in 17,179,869,180 bytes"):
            list(container.read_segments(fh, "x.aez", header["count"]))


def test_compress_never_writes_a_header_that_decompress_refuses():
    import io

    out = io.BytesIO()
    too_many = {"count": container.MAX_IMAGES + 1, "names": []}
    with pytest.raises(container.DataError, match="holds at most 1,000,000 images .* compress the folder in parts"):
        container.write_header(out, too_many)
    assert out.getvalue() == b""


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width × height pixels (no pixel data: decoding would fail, reading the size not)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def test_an_image_declaring_a_huge_size_is_refused_before_decoding(tmp_path: Path, capsys, monkeypatch):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "imgs" / "a" / "bomb.png").write_bytes(_png_header(12000, 12000))  # below Pillow's own refusal
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"prepare": {
        "source": "image_folder", "path": "imgs", "normal_classes": ["a"]}}))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["prepare"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("bomb.png: 12000×12000 pixels, at most 134,217,728 pixels an image; downscale it first")
    assert not (tmp_path / "data").exists()


# ------------------------------------------------------------------------------------------ resource bounds
PEAK = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, proc.returncode, proc.stderr.strip().splitlines()[-1:])
"""


def _peak_mib(project: Path, *argv: str) -> tuple[int, int, str]:
    """Peak RSS (MiB) of `aeops ARGV` in a fresh process, its exit code and last stderr line."""
    cmd = [sys.executable, "-c", PEAK, sys.executable, "-m", "aeops.cli", *argv, "--params", str(project / "params.yaml")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=project).stdout.split(maxsplit=2)
    return int(out[0]), int(out[1]), out[2]


@pytest.fixture(scope="module")
def bombs(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 78 KB header that unpacks to 512 MiB, and a 0.5 KB file declaring a 65535 × 65535 image."""
    import lzma

    folder = tmp_path_factory.mktemp("bombs")
    packer = lzma.LZMACompressor(format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 1}])
    chunk = b" " * (1 << 20)
    body = b"".join([packer.compress(b'{"names": "'), *(packer.compress(chunk) for _ in range(512)),
                     packer.compress(b'"}'), packer.flush()])
    (folder / "lzma.aez").write_bytes(_raw_header(body))
    # the registered model's own coder and fingerprint: without the bound, decoding would get as far as resizing
    from aeops.compression.codec import coder_id
    from aeops.compression.folder import load_codec_model

    codec = load_codec_model(MODEL, f"sqlite:///{project / 'mlflow.db'}")
    _aez(folder / "sizes.aez", sizes=[[65535, 65535]], coder=coder_id(), image_shape=codec.bundle.image_shape,
         model={"name": "aeops-autoencoder", "version": "1", "fingerprint": codec.fingerprint})
    return folder


@pytest.fixture(scope="module")
def refusal_mib(project: Path, tmp_path_factory: pytest.TempPathFactory) -> int:
    """Peak RSS of a refusal that reads 12 bytes (the same imports as a decompress), measured once."""
    folder = tmp_path_factory.mktemp("not-aez")
    (folder / "not.aez").write_bytes(b"plain text, not an aez")
    base, code, _ = _peak_mib(project, "decompress", str(folder / "not.aez"), str(folder / "o1"))
    assert code == 2
    return base


@pytest.mark.parametrize("bomb", ["lzma.aez", "sizes.aez"])
def test_a_small_crafted_file_cannot_make_decompress_allocate(bomb: str, project: Path, bombs: Path, refusal_mib: int,
                                                             tmp_path: Path):
    """Peak RSS against a refusal that reads 12 bytes (the same imports): at most 200 MiB more."""
    base = refusal_mib
    peak, code, line = _peak_mib(project, "decompress", str(bombs / bomb), str(tmp_path / "o2"))
    assert code == 2 and ("unpacks to more than" in line or "65535×65535" in line), line
    print(f"{bomb}: peak RSS {peak} MiB, a plain refusal {base} MiB")
    assert peak - base < 200, f"{bomb}: peak RSS {peak} MiB vs {base} MiB for a 12-byte refusal"
    assert (bombs / bomb).stat().st_size < 100_000 and not (tmp_path / "o2").exists()


# ------------------------------------------------------------------------------------------ interruptions
def test_last_checkpoint_is_saved_every_epoch_not_only_on_improvement(tmp_path: Path):
    """A resumed run starts after the last finished epoch, so it logs no epoch twice (val/loss rises here)."""
    import lightning as L
    import torch

    from aeops.training.train import build_trainer

    class Rising(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, idx):
            return (self.w - batch[0]).pow(2).mean()

        def validation_step(self, batch, idx):
            self.log("val/loss", float(self.current_epoch), on_epoch=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1)), batch_size=4)
    cfg = tiny_train()
    cfg.max_epochs, cfg.patience = 4, 10
    trainer = build_trainer(cfg, False, tmp_path)
    trainer.fit(Rising(), data, data)
    epoch = lambda name: torch.load(tmp_path / name, weights_only=True)["epoch"]  # noqa: E731
    assert epoch("best.ckpt") == 0 and epoch("last.ckpt") == 3  # main's save_last kept epoch 0 as last
    assert trainer.checkpoint_callback.best_model_path == str(tmp_path / "best.ckpt")


def test_a_failed_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path):
    from aeops.io import atomic_path

    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


# ------------------------------------------------------------------------------------------ environment
@pytest.fixture
def lost_store(project: Path, tmp_path: Path) -> Path:
    """A copy of the project whose mlflow.db was deleted."""
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("mlflow.db*"))
    return copy


@pytest.mark.parametrize("argv", [["promote"], ["serve"], ["score", "rows.csv", "s.parquet"], ["register"], ["evaluate"]],
                         ids=lambda a: a[0])
def test_a_deleted_tracking_store_names_the_one_recovery_command(argv, lost_store: Path, capsys, monkeypatch):
    monkeypatch.setattr(cli.os, "execvpe", lambda *a: pytest.fail("serve must not start"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the copy's own (new, empty) mlflow.db
    monkeypatch.chdir(lost_store)
    before = _hashes(lost_store)
    assert cli.main([*argv, "--params", str(lost_store / "params.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not hold (mlflow.db deleted" in err, err
    assert err.endswith("train into this store again with `dvc repro -f --downstream train`"), err
    assert _hashes(lost_store) == before


def test_a_tracking_server_error_is_not_taken_for_a_lost_store(monkeypatch, tmp_path: Path):
    """Only 'run not found' means the store lost it; a server error or a refusal keeps MLflow's own message."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from aeops.errors import TrackingLost
    from aeops.tracking import require_run

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def refused(self, run_id):
        raise MlflowException("permission denied", error_code="PERMISSION_DENIED")

    real = mlflow.MlflowClient.get_run
    monkeypatch.setattr(mlflow.MlflowClient, "get_run", refused)
    with pytest.raises(MlflowException, match="permission denied") as caught:
        require_run("0" * 32, MlflowConfig(), source="models/run.json")
    assert not isinstance(caught.value, TrackingLost)
    monkeypatch.setattr(mlflow.MlflowClient, "get_run", real)  # the store in tmp_path: no such run
    with pytest.raises(TrackingLost, match="names MLflow run 00000000"):
        require_run("0" * 32, MlflowConfig(), source="models/run.json")


def _fake_venv(tmp: Path, deps_hash: str) -> Path:
    other = tmp / "other"
    (other / ".venv").mkdir(parents=True)
    (other / ".venv" / ".installed").write_text(f"{other}\n{deps_hash}\n")
    clone = tmp / "clone"
    clone.mkdir()
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(REPO / name, clone / name)
    (clone / ".venv").symlink_to(other / ".venv")
    os.utime(other / ".venv" / ".installed", (0, 0))  # older than the clone's pyproject.toml
    return clone


@pytest.mark.skipif(not all(map(shutil.which, ("make", "realpath", "sha256sum"))), reason="needs make and coreutils")
def test_make_never_reinstalls_into_a_venv_another_checkout_made(tmp_path: Path):
    deps = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + (REPO / "constraints.txt").read_bytes())
    clone = _fake_venv(tmp_path / "differs", "0" * 16)
    proc = subprocess.run(["make", ".venv/.installed"], cwd=clone, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "pip" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    other = tmp_path / "differs" / "other"
    assert f"links to {other / '.venv'}, set up by {other} from other" in proc.stderr and "rm .venv" in proc.stderr
    clone = _fake_venv(tmp_path / "same", deps.hexdigest()[:16])
    proc = subprocess.run(["make", ".venv/.installed"], cwd=clone, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "pip" not in proc.stdout and "is shared with" in proc.stderr, proc.stderr
    assert (tmp_path / "same" / "other" / ".venv" / ".installed").read_text().startswith(str(tmp_path / "same" / "other"))


def test_the_readme_lists_the_guards_and_bounds():
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Reliability"):]
    section = section[:section.index("\n## ", 5)]
    for bound in ("MAX_HEADER_BYTES", "MAX_IMAGE_PIXELS", "MAX_SEGMENT_ROWS", "MAX_BODY_BYTES", "MAX_JSON_DEPTH",
                  "dvc repro -f --downstream train"):
        assert bound in section, bound
    assert "MAX_VALUES_PER_IMAGE" in section and "MAX_IMAGES" in section
