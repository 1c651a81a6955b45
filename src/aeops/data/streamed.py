"""A table larger than `prepare.max_rows`, prepared in two passes with memory bounded by max_rows.

Each row's split comes from a seeded hash of its position (`row_uniform`): `test_fraction` of the rows
are test, `val_fraction` val, the rest train, as the in-memory path's shares. Pass one reads the table
in batches and keeps a seeded sample of about `max_rows` of the train and val rows (the encoding and
scaler are fitted on them, and train and val are written from them) and notes which columns have
missing cells anywhere. Pass two (prepare's `write_test`) reads the table again and encodes, scales
and writes the test rows batch by batch as Parquet row groups, at most `max_rows` of them (fewer with
`max_eval_rows`), a seeded share of all test rows. Nothing of the table is held beyond one batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aeops.config import PrepareConfig
from aeops.data.tables import TableSource, row_uniform
from aeops.errors import DataError

log = logging.getLogger(__name__)
SPLIT, SAMPLE, TEST = 1, 2, 3  # the salts of the three hashes: split, train/val sample, test share
HASH_ROWS = 1 << 20


@dataclass
class StreamedTable:
    """What pass one learnt of the table, and how pass two picks its test rows."""

    source: TableSource
    rows: int  # in the table
    test_rows: int  # rows whose hash puts them in test
    test_keep: float  # the share of those written (max_rows, max_eval_rows)
    sample_keep: float  # the share of the train and val rows sampled
    u: np.ndarray  # the sampled rows' split numbers: val where u < test_fraction + val_fraction
    gaps: set[str]  # columns with a missing cell anywhere in the table
    test_fraction: float
    seed: int
    numeric: tuple[str, ...]  # columns read as numbers (the label)

    def test_batches(self) -> Iterator[pd.DataFrame]:
        """Pass two: the test rows written, batch by batch, in file order."""
        for batch in self.source.batches(numeric=self.numeric):
            start = int(batch.index[0])
            keep = row_uniform(start, len(batch), seed=self.seed, salt=SPLIT) < self.test_fraction
            if self.test_keep < 1.0:
                keep &= row_uniform(start, len(batch), seed=self.seed, salt=TEST) < self.test_keep
            if keep.any():
                yield batch[keep]


def sample_table(source: TableSource, cfg: PrepareConfig, rows: int) -> tuple[pd.DataFrame, StreamedTable]:
    """Pass one: (the sampled train and val rows, every column as read; what prepare needs for pass two)."""
    assert cfg.max_rows is not None
    test_rows = sum(int((row_uniform(s, min(HASH_ROWS, rows - s), seed=cfg.seed, salt=SPLIT) < cfg.test_fraction).sum())
                    for s in range(0, rows, HASH_ROWS))
    sample_keep = min(1.0, cfg.max_rows / max(rows - test_rows, 1))
    test_keep = min(1.0, min(cfg.max_rows, cfg.max_eval_rows or cfg.max_rows) / max(test_rows, 1))
    numeric = (cfg.label_column,) if cfg.label_column is not None else ()
    parts: list[pd.DataFrame] = []
    us: list[np.ndarray] = []
    gaps: set[str] = set()
    seen = 0
    for batch in source.batches(numeric=numeric):
        start = int(batch.index[0])
        seen += len(batch)
        gaps |= {str(c) for c, n in batch.isna().sum().items() if n}
        u = row_uniform(start, len(batch), seed=cfg.seed, salt=SPLIT)
        keep = (u >= cfg.test_fraction) & (row_uniform(start, len(batch), seed=cfg.seed, salt=SAMPLE) < sample_keep)
        parts.append(batch[keep])
        us.append(u[keep])
    if seen != rows:
        raise DataError(f"{source.path}: {seen} rows read but {rows} counted; is the table being written to?")
    df = pd.concat(parts, ignore_index=True)
    log.info("%s: %d rows, more than prepare.max_rows = %d: train and val from a seeded sample of %d rows, test "
             "streamed (%d of %d rows)", source.path, rows, cfg.max_rows, len(df), round(test_rows * test_keep), test_rows)
    return df, StreamedTable(source, rows, test_rows, test_keep, sample_keep, np.concatenate(us), gaps,
                             cfg.test_fraction, cfg.seed, numeric)
