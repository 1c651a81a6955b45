"""Which input columns form one feature: a mixed-type table's numeric values, missing flags and one-hot blocks.

A `Layout` (a plain dict in the data's scaler and the checkpoint) lets the network and the score treat
a categorical column as one feature, not as k independent numbers:
- the decoder's outputs for a one-hot block are logits; `activate` turns them into level probabilities;
- the reconstruction loss is, per row, the mean over features of the squared error of a numeric value
  (skipped where its missing flag is 1: the network is not taught the imputed value; the flag itself is
  an input only, neither reconstructed nor scored: random gaps would only add noise to the score) and the
  cross-entropy of a categorical column's observed level (skipped where the cell is missing, all 0),
  and the squared distance of a cyclic (sine, cosine) pair (skipped where the time is missing, both 0);
- `group_residuals` gives the score one residual per feature: a numeric value's (0 where missing),
  a categorical column's root Brier score, √Σ(one-hot − probability)² (0 for a perfect guess, about 1
  for a level the network gives no weight, such as the reserved unseen one), a cyclic pair's distance;
  a missing cell has none.
Without a layout (numeric tables, images) every input value is its own feature, with the plain MSE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Group:
    name: str
    kind: str  # numeric | categorical | cyclic (a sine, cosine pair) | flag (an input only: neither loss nor score)
    start: int
    stop: int
    mask: int | None = None  # numeric: the column that is 1 where the value is missing


class Layout:
    """Feature groups over `width` input columns (see the module docstring)."""

    def __init__(self, groups: list[Group], width: int):
        self.groups, self.width = groups, width
        numeric = [g for g in groups if g.kind == "numeric"]
        spans = [g for g in groups if g.kind in ("categorical", "cyclic")]
        self.scored = numeric + spans  # the scored features' groups, in `names` order
        self.blocks = [(g.start, g.stop) for g in groups if g.kind == "categorical"]
        self.spans = [(g.start, g.stop) for g in spans]
        self.pairs = [(g.start, g.stop) for g in groups if g.kind == "cyclic"]
        self.numeric = np.array([g.start for g in numeric], dtype=np.int64)
        self.masks = np.array([-1 if g.mask is None else g.mask for g in numeric], dtype=np.int64)
        self.names = [g.name for g in self.scored]  # the scored features
        self._numeric_t = torch.from_numpy(self.numeric)
        self._masked = torch.from_numpy(np.flatnonzero(self.masks >= 0))
        self._mask_cols = torch.from_numpy(self.masks[self.masks >= 0])

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Layout | None:
        if not data:
            return None
        return cls([Group(**g) for g in data["groups"]], int(data["width"]))

    def __len__(self) -> int:
        return len(self.names)

    def activate(self, out: Tensor) -> Tensor:
        """Decoder outputs → reconstructions: level probabilities in each one-hot block."""
        if not self.blocks:
            return out
        out = out.clone()
        for start, stop in self.blocks:
            out[:, start:stop] = torch.softmax(out[:, start:stop], dim=1)
        return out

    def loss(self, out: Tensor, x: Tensor) -> Tensor:
        """Mean over rows and features of the masked squared error and the categorical cross-entropy (`out`: logits)."""
        return self._row_sums(out, x).mean() / len(self)

    def row_loss(self, out: Tensor, x: Tensor) -> Tensor:
        """(n,) per row: the mean over features of the masked squared error and the cross-entropy."""
        return self._row_sums(out, x) / len(self)

    def _row_sums(self, out: Tensor, x: Tensor) -> Tensor:
        idx = self._numeric_t.to(out.device)
        sq = (out[:, idx] - x[:, idx]) ** 2
        if len(self._masked):
            keep = torch.ones_like(sq)
            keep[:, self._masked.to(out.device)] = 1.0 - x[:, self._mask_cols.to(out.device)]
            sq = sq * keep
        total = sq.sum(dim=1)
        for start, stop in self.blocks:
            target = x[:, start:stop]
            ce = F.cross_entropy(out[:, start:stop], target.argmax(dim=1), reduction="none")
            total = total + ce * (target.sum(dim=1) > 0).to(out.dtype)
        for start, stop in self.pairs:
            target = x[:, start:stop]
            sq = ((out[:, start:stop] - target) ** 2).sum(dim=1)
            total = total + sq * (target.abs().sum(dim=1) > 0).to(out.dtype)
        return total

    def column_owner(self) -> np.ndarray:
        """(width, features) 0/1: which scored feature each input column belongs to (a missing flag to its
        value's feature), so per-column quantities sum to per-feature ones."""
        owner = np.zeros((self.width, len(self)), np.float64)
        for j, g in enumerate(self.scored):
            owner[g.start : g.stop, j] = 1.0
            if g.mask is not None:
                owner[g.mask, j] = 1.0
        return owner

    def group_residuals(self, residual: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(members, n, width) residuals x − reconstruction → (members, n, features), in `names` order."""
        num = residual[:, :, self.numeric]
        if (self.masks >= 0).any():
            keep = np.ones(num.shape[1:], np.float64)
            cols = np.flatnonzero(self.masks >= 0)
            keep[:, cols] = 1.0 - np.asarray(x, np.float64).reshape(len(x), -1)[:, self.masks[cols]]
            num = num * keep[None]
        flat = np.asarray(x, np.float64).reshape(len(x), -1)
        spans = [np.sqrt(np.sum(residual[:, :, a:b] ** 2, axis=2)) * (np.abs(flat[:, a:b]).sum(axis=1) > 0)
                 for a, b in self.spans]  # an all-zero block or pair is a missing cell: no residual
        return np.concatenate([num, *(c[:, :, None] for c in spans)], axis=2) if spans else num
