"""Lightning wrapper: one shared `model_step` for train/val/test; metrics `<stage>/loss` etc."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from aeops.models.autoencoder import Autoencoder
from aeops.models.factory import build_autoencoder, load_autoencoder  # noqa: F401 (re-exported)

LOSS_PARTS = ("loss", "recon_loss", "reg_loss")


class LitAutoencoder(L.LightningModule):
    """Trains any `Autoencoder` variant built from plain (checkpoint-safe) hyperparameters."""

    def __init__(
        self,
        model_cfg: dict[str, Any],
        n_features: int,
        *,
        image_shape: list[int] | None = None,
        unit_interval: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        members: int = 1,
        layout: dict[str, Any] | None = None,
        trim: float = 0.0,
        trim_warmup: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        shape = tuple(image_shape) if image_shape else None
        self.model = build_autoencoder(model_cfg, n_features, image_shape=shape, unit_interval=unit_interval, members=members,
                                        layout=layout)
        self._sums: dict[str, tuple[Tensor, int]] = {}
        # Without a penalty, loss = recon_loss and reg_loss = 0: log `loss` alone (plus val/recon_loss, the
        # measure that tune compares across variants), so no curve hides under an identical one.
        nets = getattr(self.model, "members", [self.model])
        self._penalised = any(type(m).penalty is not Autoencoder.penalty for m in nets)

    def forward(self, x: Tensor) -> Tensor:
        return self.model.reconstruct(x)

    def model_step(self, batch: Tensor, stage: str) -> Tensor:
        # robust training: after `trim_warmup` epochs, each training batch leaves out its `trim` share of rows
        # reconstructed worst. Validation trims the same share in every epoch: on contaminated rows a plain
        # val/loss rewards fitting the anomalies, so early stopping and the best checkpoint went back to the
        # untrimmed warm-up epochs (measured: on wpbc the robust run kept epoch 5's weights, the same as off).
        # The test loss stays a plain mean over every row.
        trim = self.hparams.trim
        robust = trim > 0 and (stage == "val" or (stage == "train" and self.current_epoch >= self.hparams.trim_warmup))
        out = self.model(batch, trim) if robust else self.model(batch)
        # Loss sums per epoch, checked and logged once at its end: a per-step `self.log` or
        # `.item()` costs ~10 % of a small model's CPU epoch and forces a GPU sync every step.
        n = batch.shape[0]
        parts = torch.stack([out.loss, out.recon_loss, out.reg_loss]).detach() * n
        total, count = self._sums.get(stage, (0.0, 0))
        self._sums[stage] = (parts + total, count + n)
        return out.loss

    def _log_epoch(self, stage: str) -> None:
        if stage not in self._sums:
            return
        total, count = self._sums.pop(stage)
        means = total / count
        # Every rank stops together (a lone raise would leave the others waiting in a collective).
        if self.trainer.strategy.reduce_boolean_decision(not torch.isfinite(means[0]).item(), all=False):
            raise FloatingPointError(
                f"{stage}/loss is {means[0].item()} in epoch {self.current_epoch}: training diverged "
                "(lower train.lr, raise train.gradient_clip_val or reduce the variant's penalty weight)"
            )
        self.log_dict(
            {f"{stage}/{name}": means[i] for i, name in enumerate(LOSS_PARTS) if self._logs(stage, name)},
            prog_bar=stage != "train",
            sync_dist=True,  # means over all ranks (equal shards under DDP)
        )

    def _logs(self, stage: str, part: str) -> bool:
        return self._penalised or part == "loss" or (stage == "val" and part == "recon_loss")

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        return self.model_step(batch, "train")

    def validation_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        return self.model_step(batch, "val")

    def test_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        return self.model_step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
