"""A table on disk (a CSV file, a Parquet file or a folder of Parquet files), read whole or in batches.

`TableSource` checks the files before anything is read (a folder's files must agree in columns and
types), counts the rows from the Parquet metadata (a CSV is counted by pyarrow's reader) and yields
row batches as pandas frames, in file order, so that prepare's memory does not follow the table's
size. `row_uniform` gives each row of the table a seeded uniform number from its position alone:
the same file and seed give the same split however the batches fall.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aeops.errors import DataError

TABLE_EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
BATCH_ROWS = 131_072  # rows a batch holds while a table is streamed


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


class TableSource:
    """The table at `path`: a .csv or .parquet/.pq file, or a folder of Parquet files (hive partitions
    such as `year=2024/` become columns). Every problem found is a `DataError` naming the file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            self.fmt = "parquet"
            self.files = sorted(p for p in self.path.rglob("*") if p.is_file() and p.suffix.lower() in (".parquet", ".pq")
                                and not any(part.startswith((".", "_")) for part in p.relative_to(self.path).parts))
            if not self.files:
                raise DataError(f"{self.path}: folder holds no Parquet files (*.parquet, *.pq); a table folder is a "
                                "Parquet dataset, e.g. as Spark or pandas write one")
        else:
            self.fmt = TABLE_EXTENSIONS.get(self.path.suffix.lower(), "")
            if not self.fmt:
                allowed = ", ".join(TABLE_EXTENSIONS)
                raise DataError(f"{self.path}: unsupported table extension '{self.path.suffix}' (allowed: {allowed}, "
                                "or a folder of Parquet files)")
            if not self.path.is_file():
                raise DataError(f"{self.path}: table file not found")
            if self.path.stat().st_size == 0:
                raise DataError(f"{self.path}: empty file")
            self.files = [self.path]
        self.columns = self._header()
        if not self.columns:
            raise DataError(f"{self.path}: empty file (no header line)")
        dups = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if dups:
            raise DataError(f"{self.path}: duplicate column names: {', '.join(map(repr, dups))}")

    # ------------------------------------------------------------ schema
    def _header(self) -> list[str]:
        """Column names as stored (before pandas renames duplicates); a folder's files must agree."""
        if self.fmt == "csv":
            with self.path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
                row = next(csv.reader(fh), None)
            return [c.strip() for c in row] if row else []
        import pyarrow.parquet as pq

        first: Any = None
        schemas = []
        for f in self.files:
            try:
                schema = pq.read_schema(f)
            except Exception as err:  # pyarrow raises several types for corrupt files
                raise DataError(f"{f}: not a valid Parquet file ({_first_line(err)})") from None
            schemas.append(schema)
            if first is None:
                first, first_file = schema, f
                continue
            names, first_names = list(schema.names), list(first.names)
            for name in first_names:
                if name not in names:
                    raise DataError(f"{f}: column '{name}' is missing (it is in {first_file.name}); the files of a "
                                    "table folder must have the same columns")
            for name in names:
                if name not in first_names:
                    raise DataError(f"{f}: column '{name}' is not in {first_file.name}; the files of a table folder "
                                    "must have the same columns")
                a, b = schema.field(name).type, first.field(name).type
                if not _compatible(a, b):
                    raise DataError(f"{f}: column '{name}' is {a} but {b} in {first_file.name}; the files of a table "
                                    "folder must agree in types")
        if self.path.is_dir():  # integers in one file, floats in another (a column with gaps): read as floats
            import pyarrow as pa

            self._schema = pa.unify_schemas(schemas, promote_options="permissive")
            return [str(n) for n in self._dataset().schema.names]
        return [str(n) for n in first.names]

    def _dataset(self) -> Any:
        import pyarrow.dataset as ds

        # pre_buffer (the default) keeps every column chunk it has read until the scan ends: memory grows to
        # the file's size (apache/arrow#39808); without it a scan holds about one row group
        fmt = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False))
        try:
            if self.path.is_dir():
                found = ds.dataset([str(f) for f in self.files], format=fmt, partitioning="hive",
                                   partition_base_dir=str(self.path))
                schema = getattr(self, "_schema", None)
                if schema is None:
                    return found
                for field in found.schema:  # the hive partition columns
                    if field.name not in schema.names:
                        schema = schema.append(field)
                return ds.dataset([str(f) for f in self.files], format=fmt, partitioning="hive",
                                  partition_base_dir=str(self.path), schema=schema)
            return ds.dataset(str(self.path), format=fmt)
        except Exception as err:
            raise DataError(f"{self.path}: cannot read the Parquet dataset ({_first_line(err)})") from None

    # ------------------------------------------------------------ reading
    def count_rows(self) -> int:
        """Data rows: from the Parquet footers, or one pass of pyarrow's CSV reader (every cell as text)."""
        if self.fmt == "parquet":
            return int(self._dataset().count_rows())
        import pyarrow as pa
        import pyarrow.csv as pacsv

        opts = pacsv.ConvertOptions(column_types={c: pa.string() for c in self.columns},
                                    include_columns=[self.columns[0]])
        try:
            with pacsv.open_csv(self.path, convert_options=opts,
                                parse_options=pacsv.ParseOptions(newlines_in_values=True)) as reader:
                return sum(batch.num_rows for batch in reader)
        except Exception as err:
            raise DataError(f"{self.path}: cannot read csv ({_first_line(err)})") from None

    def read(self) -> pd.DataFrame:
        """The whole table (pandas' own type inference for a CSV)."""
        try:
            if self.fmt == "csv":
                df = pd.read_csv(self.path, skipinitialspace=True)
            else:
                df = self._dataset().to_table().to_pandas()
        except pd.errors.EmptyDataError:
            raise DataError(f"{self.path}: empty file") from None
        except Exception as err:
            raise DataError(f"{self.path}: cannot read {self.fmt} ({_first_line(err)})") from None
        df.columns = [str(c) for c in df.columns]
        return df

    def batches(self, rows: int | None = None, *, numeric: tuple[str, ...] = ()) -> Iterator[pd.DataFrame]:
        """The rows in file order, `rows` (BATCH_ROWS) at a time, each batch indexed by its rows' positions in the table.

        A CSV's cells stay text as written (an empty cell is missing), so every batch has the same types
        whatever its values (prepare's encoding parses numbers and times); the `numeric` columns (a label)
        become numbers where every value of the batch is one.
        """
        start, rows = 0, rows or BATCH_ROWS
        try:
            if self.fmt == "csv":
                chunks: Any = pd.read_csv(self.path, dtype=str, skipinitialspace=True, chunksize=rows)
            else:
                chunks = (b.to_pandas() for b in self._dataset().to_batches(batch_size=rows, batch_readahead=1,
                                                                             fragment_readahead=1))
            for df in chunks:
                if len(df) == 0:
                    continue
                df.columns = [str(c) for c in df.columns]
                df.index = pd.RangeIndex(start, start + len(df))
                for name in numeric:
                    if self.fmt == "csv" and name in df.columns:
                        parsed = pd.to_numeric(df[name], errors="coerce")
                        if parsed.notna().sum() == df[name].notna().sum():
                            df[name] = parsed
                start += len(df)
                yield df
        except DataError:
            raise
        except Exception as err:
            raise DataError(f"{self.path}: cannot read {self.fmt} at data row {start + 1} ({_first_line(err)})") from None


def _compatible(a: Any, b: Any) -> bool:
    """Types two files of a folder may disagree in: any with null (an all-empty column), integers with floats,
    the string types."""
    import pyarrow as pa

    t = pa.types
    number = (t.is_integer, t.is_floating)
    text = (t.is_string, t.is_large_string)
    return bool(a == b or t.is_null(a) or t.is_null(b) or (any(f(a) for f in number) and any(f(b) for f in number))
                or (any(f(a) for f in text) and any(f(b) for f in text)))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def row_uniform(start: int, n: int, *, seed: int, salt: int) -> np.ndarray:
    """A uniform number in [0, 1) for each of the rows start … start+n-1, from (seed, salt, row) only:
    splitmix64 of the row's position, so any batching of the table gives the same numbers."""
    with np.errstate(over="ignore"):
        x = np.arange(start, start + n, dtype=np.uint64) * _GOLDEN
        x += np.uint64((seed * 0xD1B54A32D192ED03 + salt * 0xA0761D6478BD642F) % (1 << 64))
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
