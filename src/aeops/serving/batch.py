"""Score large CSV/Parquet files in chunks (constant memory) with a registered or logged model."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from aeops.errors import AeopsError, DataError
from aeops.io import atomic_path, same_file

FORMATS = (".csv", ".parquet", ".pq")


def read_chunks(path: Path, rows: int) -> tuple[Iterator[pd.DataFrame], int | None]:
    """Chunks of the input and the total row count when the format knows it (Parquet)."""
    if path.suffix.lower() == ".csv":
        return iter(pd.read_csv(path, chunksize=rows)), None
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(path)
    except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"{path}: cannot be read as Parquet ({str(err).strip().splitlines()[0][:200]})") from None
    return (b.to_pandas() for b in f.iter_batches(batch_size=rows)), f.metadata.num_rows


def guard(src: Path, chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Re-raise a reader's parse error as one line naming the file."""
    try:
        yield from chunks
    except (ValueError, OSError) as err:  # pandas ParserError, pyarrow ArrowInvalid are ValueErrors
        raise DataError(f"{src}: cannot be read ({str(err).strip().splitlines()[0][:200]})") from None


@dataclass
class ScoreSummary:
    """What a batch scoring wrote: rows, the shares flagged and out of range, warnings about the input."""

    rows: int
    flagged_share: float | None = None
    out_of_range_share: float | None = None  # rows with a feature outside the training range ± 10 % span
    warnings: list[str] = field(default_factory=list)


def check_paths(src: Path, dst: Path | None = None, *, chunk_rows: int = 1) -> None:
    """One line if the input is not an existing CSV/Parquet file, the output is not a new *.parquet file
    other than the input, or the chunk size is not a whole number ≥ 1."""
    if src.suffix.lower() not in FORMATS or not src.is_file():
        raise DataError(f"{src}: need an existing file ending in {', '.join(FORMATS)}")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise DataError(f"chunk rows {chunk_rows!r}: must be a whole number ≥ 1")
    if dst is None:
        return
    if dst.suffix.lower() not in (".parquet", ".pq"):
        raise DataError(f"{dst}: the output is written as Parquet; name it *.parquet")
    if same_file(src, dst):
        raise DataError(f"{dst}: is the input file; name another output (the scores would replace the rows)")
    if dst.is_dir():
        raise DataError(f"{dst}: is a folder (Parquet written by Spark?); name a new file, nothing is replaced")


def mlflow_cause(message: str) -> str:
    """The reason inside MLflow's schema errors, which start by printing the whole input frame:
    "Failed to enforce schema of data '<frame>' with schema '<schema>'. Error: <reason>"."""
    reason = message.rsplit("Error: ", 1)[-1] if "Failed to enforce schema" in message else message
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    return (lines[0] if lines else "the model refused the rows")[:300]


def model_error(src: Path, err: Exception, *, start: int, rows: int) -> DataError:
    """One line naming the file, the rows and the cause of a refused chunk."""
    return DataError(f"{src}: rows {start}–{start + rows - 1}: {mlflow_cause(getattr(err, 'message', str(err)))}")


def numeric_float32(chunk: pd.DataFrame) -> pd.DataFrame:
    """The signature says float32; files hold float64 (or ints): cast the numeric columns."""
    return chunk.astype({c: "float32" for c in chunk.columns if pd.api.types.is_numeric_dtype(chunk[c])})


def score_file(
    model_uri: str, input_path: str, output_path: str, chunk_rows: int = 50_000, output: str = "scores",
    progress: bool = True,
) -> ScoreSummary:
    """Write the model's per-row output for every input row to a Parquet file; summarise the batch."""
    import mlflow
    import pyarrow as pa
    import pyarrow.parquet as pq
    from mlflow.exceptions import MlflowException
    from rich.progress import Progress

    src, dst = Path(input_path), Path(output_path)
    check_paths(src, dst, chunk_rows=chunk_rows)
    model = mlflow.pyfunc.load_model(model_uri)
    scorer = getattr(model.unwrap_python_model(), "scorer", None)
    chunks, total = read_chunks(src, chunk_rows)
    done, writer, flagged, outside = 0, None, 0, 0
    with atomic_path(dst) as tmp, Progress(disable=not progress) as bar:
        task = bar.add_task(f"score {src.name}", total=total)
        try:
            for chunk in guard(src, chunks):
                if len(chunk) == 0:
                    continue
                chunk = numeric_float32(chunk)
                try:
                    out = model.predict(chunk, params={"output": output})
                except MlflowException as err:
                    raise model_error(src, err, start=done, rows=len(chunk)) from None
                if scorer is not None and output == "scores":
                    flagged += int(out["is_anomaly"].sum())
                    outside += int((out["out_of_range"] > 0).sum())
                table = pa.Table.from_pandas(out, preserve_index=False)
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                done += len(chunk)
                bar.update(task, completed=done)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise AeopsError(f"{src}: no rows to score")
    if scorer is None or output != "scores":
        return ScoreSummary(done)
    return ScoreSummary(done, flagged / done, outside / done, scorer.batch_warnings(done, outside, flagged))
