"""The batch reader that `score`, `monitor` and promotion share: a CSV/Parquet file (or a table) in
chunks through a logged model, constant memory, every refusal one line naming the file and the rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from aeops.errors import DataError
from aeops.io import same_file

FORMATS = (".csv", ".parquet", ".pq")


def read_chunks(path: Path, rows: int, *, text: list[str] | None = None) -> tuple[Iterator[pd.DataFrame], int | None]:
    """Chunks of the input and the total row count when the format knows it (Parquet). A CSV is read as
    prepare reads it (spaces after the commas skipped), the `text` columns as written (a code '01' stays '01',
    whatever else the chunk holds)."""
    if path.suffix.lower() == ".csv":
        present = set(pd.read_csv(path, nrows=0, skipinitialspace=True).columns) if text else set()
        dtype = {c: str for c in text or [] if c in present}
        return iter(pd.read_csv(path, chunksize=rows, skipinitialspace=True, dtype=dtype or None)), None
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


def check_paths(src: Path, dst: Path | None = None, *, chunk_rows: int = 1, folders: bool = False) -> None:
    """One line if the input is not an existing CSV/Parquet file (or, with `folders`, a folder), the output is not
    a new *.parquet file other than the input, or the chunk size is not a whole number ≥ 1."""
    if not (folders and src.is_dir()) and (src.suffix.lower() not in FORMATS or not src.is_file()):
        also = " or a folder of images" if folders else ""
        raise DataError(f"{src}: need an existing file ending in {', '.join(FORMATS)}{also}")
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


CASTS = {"float": "float32", "double": "float64", "string": object}


def conform(chunk: pd.DataFrame, schema: Any) -> pd.DataFrame:
    """Cast the columns a file stores in another type to the model's signature: numbers (float64, ints) to its
    float32 or float64, and a string column read as numbers or booleans (a categorical one) to text values."""
    types = {c.name: c.type.name for c in schema.inputs} if schema is not None else {}
    cast: dict[str, Any] = {}
    for c in chunk.columns:
        want = CASTS.get(types.get(c, "float" if not types else ""))
        if want is object and chunk[c].dtype != object:
            cast[c] = object
        elif want in ("float32", "float64") and pd.api.types.is_numeric_dtype(chunk[c]):
            cast[c] = want
    return chunk.astype(cast) if cast else chunk


def load_model(model_uri: str) -> tuple[Any, Any]:
    """(the MLflow pyfunc, its aeops `Scorer` or None for a pyfunc aeops did not write)."""
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)
    return model, getattr(model.unwrap_python_model(), "scorer", None)


def predict(model: Any, chunk: pd.DataFrame, *, src: Path | str, start: int = 0,
            params: dict[str, Any] | None = None) -> pd.DataFrame:
    """The model's output for these rows (columns cast to the signature's types); a refusal is one line."""
    from mlflow.exceptions import MlflowException

    try:
        return model.predict(conform(chunk, model.metadata.get_input_schema()), params=params)
    except MlflowException as err:
        raise model_error(Path(src), err, start=start, rows=len(chunk)) from None


def scored_chunks(model: Any, src: Path, *, chunk_rows: int, params: dict[str, Any] | None = None,
                  label: str = "score", progress: bool = True,
                  rows: tuple[Iterator[pd.DataFrame], int | None] | None = None,
                  ) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """(rows, the model's output for them) per non-empty chunk of `src`, with a progress bar; `rows`: the chunks
    and their total where the caller reads them (an image folder), else `src` is read as a table."""
    from rich.progress import Progress

    schema = model.metadata.get_input_schema()
    text = [c.name for c in schema.inputs if c.type.name == "string"] if schema is not None else []
    chunks, total = rows if rows is not None else read_chunks(src, chunk_rows, text=text)
    done = 0
    with Progress(disable=not progress) as bar:
        task = bar.add_task(f"{label} {src.name}", total=total)
        for chunk in guard(src, chunks):
            if len(chunk) == 0:
                continue
            out = predict(model, chunk, src=src, start=done, params=params)
            yield chunk, out
            done += len(chunk)
            bar.update(task, completed=done)
