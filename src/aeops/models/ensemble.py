"""Several autoencoders of one config, trained side by side: their averaged residuals score more steadily.

Members differ only in their random initialisation (and noise draws). Each member's loss is its own
(their parameters are disjoint), so training them together equals training them apart, in one loop.
The code, decoder and reconstruction users see are member 0's; `reconstruct_members` feeds the score.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aeops.models.autoencoder import AEOutput, Autoencoder


class AutoencoderEnsemble(nn.Module):
    """`members` autoencoders; `forward` returns the members' mean losses (member 0's code and reconstruction)."""

    def __init__(self, members: list[Autoencoder]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least 2 members")
        self.members = nn.ModuleList(members)

    def encode(self, x: Tensor) -> Tensor:
        return self.members[0].encode(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.members[0].decode(z)

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.members[0].reconstruct(x)

    def reconstruct_members(self, x: Tensor) -> Tensor:
        """(members, n, ...) what the scoring rule compares rows with: each member's `score_target`."""
        return torch.stack([m.score_target(x) for m in self.members])

    def forward(self, x: Tensor, trim: float = 0.0) -> AEOutput:
        outs = [m(x, trim) for m in self.members]  # each member trims the rows it reconstructs worst
        mean = lambda name: torch.stack([getattr(o, name) for o in outs]).mean()  # noqa: E731
        return AEOutput(mean("loss"), mean("recon_loss"), mean("reg_loss"), outs[0].z, outs[0].recon_x)


def reconstruct_members(model: nn.Module, x: Tensor) -> Tensor:
    """(members, n, ...) what the scoring rule compares rows with, of an ensemble or (1, n, ...) of one network:
    the reconstructions (a discriminative model's: see `aeops.models.discriminative`)."""
    if isinstance(model, AutoencoderEnsemble):
        return model.reconstruct_members(x)
    return model.score_target(x).unsqueeze(0)
