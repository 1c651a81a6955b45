"""Data module: prepared splits fetched a whole batch at a time (tables in memory, pixel files memory-mapped)."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler

from aeops.data.prepared import PixelRows, load_split


class TensorRows(Dataset):
    """Rows of a tensor, or of a `PixelRows` file read a batch at a time; `__getitems__` fetches a whole batch."""

    def __init__(self, x: Tensor | PixelRows):
        self.x = x

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        return self.x[i] if isinstance(self.x, Tensor) else torch.from_numpy(self.x[i])

    def __getitems__(self, idx: list[int]) -> Tensor:
        if isinstance(self.x, Tensor):
            return self.x[torch.as_tensor(idx)]
        return torch.from_numpy(self.x[np.asarray(idx)])


def keep_batch(batch: Tensor) -> Tensor:
    """collate_fn: `__getitems__` already returns the whole batch as one tensor."""
    return batch


class PreparedDataModule(L.LightningDataModule):
    """The prepared splits: tables are read into memory, pixel files (image folders) stay on disk.

    Under DDP, Lightning swaps in a DistributedSampler; the batch fetch stays vectorised.
    """

    def __init__(self, data_dir: str, batch_size: int = 128, *, num_workers: int = 0,
                 max_train_rows: int | None = None, seed: int = 0, min_epoch_rows: int = 0,
                 max_epoch_rows: int | None = None):
        super().__init__()
        self.data_dir, self.batch_size, self.num_workers = data_dir, batch_size, num_workers
        self.max_train_rows, self.seed = max_train_rows, seed
        self.min_epoch_rows, self.max_epoch_rows = min_epoch_rows, max_epoch_rows
        self.splits: dict[str, TensorRows] = {}

    def setup(self, stage: str | None = None) -> None:
        for name in ("train", "val", "test"):
            if name not in self.splits:
                x = load_split(self.data_dir, name, lazy=True).x
                if name == "train" and self.max_train_rows is not None and len(x) > self.max_train_rows:
                    keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))
                    x = x[keep[: self.max_train_rows].sort().values.numpy()]  # a seeded subsample (quick search trials)
                self.splits[name] = TensorRows(torch.from_numpy(x) if isinstance(x, np.ndarray) else x)

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        rows = self.splits[name]
        sampler = None
        size = max(len(rows), self.min_epoch_rows)
        size = size if self.max_epoch_rows is None else min(size, self.max_epoch_rows)
        if shuffle and size != len(rows):
            # small data: one epoch = several shuffled passes; large data: a fresh random share each epoch
            sampler, shuffle = RandomSampler(rows, num_samples=size), None
        return DataLoader(
            rows,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            collate_fn=keep_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
