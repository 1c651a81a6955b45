"""Lightning wrapper: one shared `model_step` for train/val/test; metrics `<stage>/loss` etc."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from aeops.models.factory import build_autoencoder


class LitAutoencoder(L.LightningModule):
    """Trains any `Autoencoder` variant built from plain (checkpoint-safe) hyperparameters."""

    def __init__(
        self,
        model_cfg: dict[str, Any],
        n_features: int,
        image_shape: list[int] | None = None,
        unit_interval: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        shape = tuple(image_shape) if image_shape else None
        self.model = build_autoencoder(model_cfg, n_features, shape, unit_interval)

    def forward(self, x: Tensor) -> Tensor:
        return self.model.reconstruct(x)

    def model_step(self, batch: Tensor, stage: str) -> Tensor:
        out = self.model(batch)
        # Every rank stops together (a lone raise would leave the others waiting in a collective).
        if self.trainer.strategy.reduce_boolean_decision(not torch.isfinite(out.loss).item(), all=False):
            raise FloatingPointError(
                f"{stage}/loss is {out.loss.item()} at epoch {self.current_epoch}: training diverged "
                "(lower train.lr, raise train.gradient_clip_val or reduce the variant's penalty weight)"
            )
        self.log_dict(
            {
                f"{stage}/loss": out.loss,
                f"{stage}/recon_loss": out.recon_loss,
                f"{stage}/reg_loss": out.reg_loss,
            },
            on_step=False,
            on_epoch=True,
            prog_bar=stage != "train",
            sync_dist=True,  # epoch means over all ranks (reduced once per epoch)
            batch_size=batch.shape[0],
        )
        return out.loss

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        return self.model_step(batch, "train")

    def validation_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        return self.model_step(batch, "val")

    def test_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        return self.model_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )


def load_autoencoder(checkpoint: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the trained `Autoencoder` from a Lightning checkpoint (loaded with weights_only=True)."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    hparams = dict(ckpt["hyper_parameters"])
    lit = LitAutoencoder(**hparams)
    lit.load_state_dict(ckpt["state_dict"])
    return lit.model.eval(), hparams
