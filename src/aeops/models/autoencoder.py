"""One base autoencoder with injectable encoder/decoder; each variant only adds its penalty.

`forward(x)` returns `AEOutput(loss, recon_loss, reg_loss, z, recon_x)`. The reconstruction loss
is the plain mean squared error per input value for every variant, so it is comparable across them;
with a `layout` (a mixed-type table, aeops.models.layout) it is the mean per feature of the masked
squared error and the categorical cross-entropy, and `decode` returns level probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import jacrev, jvp, vmap

from aeops.models.layout import Layout


@dataclass
class AEOutput:
    loss: Tensor
    recon_loss: Tensor
    reg_loss: Tensor
    z: Tensor
    recon_x: Tensor


class Autoencoder(nn.Module):
    """Vanilla (undercomplete) autoencoder: loss = MSE(decode(encode(x)), x)."""

    layout: Layout | None = None  # set by the factory for a mixed-type table

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, x: Tensor) -> Tensor:
        """Deterministic code used for scoring and embeddings."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        out = self.decoder(z)
        return out if self.layout is None else self.layout.activate(out)

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def score_target(self, x: Tensor) -> Tensor:
        """What the scoring rule compares a row with (its residual is x minus this): the reconstruction here."""
        return self.reconstruct(x)

    def corrupt(self, x: Tensor) -> Tensor:
        """Input corruption applied while training only (identity here)."""
        return x

    def encode_for_loss(self, x: Tensor) -> tuple[Tensor, object]:
        """Code fed to the decoder during the loss, plus whatever the penalty needs."""
        return self.encoder(x), None

    def penalty(self, x: Tensor, z: Tensor, extra: object) -> Tensor:
        return z.new_zeros(())

    def forward(self, x: Tensor, trim: float = 0.0) -> AEOutput:
        """Losses of a batch; `trim` > 0 leaves out that share of its rows with the highest reconstruction
        loss (robust training on data with anomalies inside: they stop pulling the fit towards them)."""
        x_in = self.corrupt(x) if self.training else x
        z, extra = self.encode_for_loss(x_in)
        out = self.decoder(z)
        recon = out if self.layout is None else self.layout.activate(out)
        if trim > 0:
            rows = (self.layout.row_loss(out, x) if self.layout is not None
                    else ((out - x) ** 2).flatten(1).mean(dim=1))
            recon_loss = trimmed_mean(rows, trim)
        elif self.layout is None:
            recon_loss = F.mse_loss(out, x)
        else:
            recon_loss = self.layout.loss(out, x)
        reg = self.penalty(x_in, z, extra)
        return AEOutput(recon_loss + reg, recon_loss, reg, z, recon)


def trimmed_mean(values: Tensor, share: float) -> Tensor:
    """Mean of the lowest (1 − share) of `values` (at least one kept); the dropped rows get no gradient."""
    keep = max(1, int(round(len(values) * (1.0 - share))))
    return torch.topk(values, keep, largest=False, sorted=False).values.mean()


class DenoisingAutoencoder(Autoencoder):
    """Reconstructs clean x from a corrupted copy (Gaussian or masking noise, training only)."""

    def __init__(self, encoder, decoder, *, noise: str = "gaussian", std: float = 0.2, mask_prob: float = 0.25):
        super().__init__(encoder, decoder)
        if noise not in ("gaussian", "masking"):
            raise ValueError(f"noise must be 'gaussian' or 'masking', got {noise!r}")
        self.noise, self.std, self.mask_prob = noise, std, mask_prob

    def corrupt(self, x: Tensor) -> Tensor:
        if self.noise == "gaussian":
            return x + self.std * torch.randn_like(x)
        return x * (torch.rand_like(x) >= self.mask_prob).to(x.dtype)


def kl_sparsity(hidden: list[Tensor], target: float, eps: float = 1e-6) -> Tensor:
    """Σ_j KL(ρ ‖ ρ̂_j), ρ̂_j = batch mean of sigmoid(pre-activation of hidden unit j), summed over layers."""
    total = hidden[0].new_zeros(())
    for pre in hidden:
        rho_hat = torch.sigmoid(pre).mean(0).clamp(eps, 1 - eps)
        total = total + (
            target * torch.log(target / rho_hat) + (1 - target) * torch.log((1 - target) / (1 - rho_hat))
        ).sum()
    return total


class SparseAutoencoder(Autoencoder):
    """Adds `l1_weight`·mean|z| on the code and `kl_weight`·KL sparsity on hidden activations."""

    def __init__(self, encoder, decoder, *, l1_weight: float = 1e-3, kl_weight: float = 1e-2, target: float = 0.05):
        super().__init__(encoder, decoder)
        self.l1_weight, self.kl_weight, self.target = l1_weight, kl_weight, target

    def encode_for_loss(self, x: Tensor) -> tuple[Tensor, object]:
        return self.encoder.features(x)

    def penalty(self, x: Tensor, z: Tensor, extra: object) -> Tensor:
        reg = self.l1_weight * z.abs().sum(1).mean()
        if self.kl_weight > 0 and extra:
            reg = reg + self.kl_weight * kl_sparsity(extra, self.target)
        return reg


def encoder_jacobian(encoder: nn.Module, x: Tensor) -> Tensor:
    """Per-sample Jacobian dz/dx of the whole encoder, shape (batch, latent, features)."""
    return vmap(jacrev(lambda xi: encoder(xi.unsqueeze(0)).squeeze(0)), randomness="different")(x)


def jacobian_norm_estimate(encoder: nn.Module, x: Tensor, projections: int = 1) -> Tensor:
    """Unbiased per-sample estimate of ‖∂z/∂x‖²_F = E_v ‖J v‖², v ~ N(0, I): one JVP per projection."""
    total = x.new_zeros(len(x))
    for _ in range(projections):
        _, jv = jvp(encoder, (x,), (torch.randn_like(x),))
        total = total + jv.pow(2).sum(1)
    return total / projections


class ContractiveAutoencoder(Autoencoder):
    """Adds `weight`·mean_b ‖∂z/∂x‖²_F, the Jacobian of the whole encoder (torch.func).

    `estimator="exact"` builds the full Jacobian (cost grows with the code size);
    `"random_projection"` uses `projections` forward-mode JVPs, unbiased and far cheaper on images.
    """

    def __init__(self, encoder, decoder, *, weight: float = 1e-3, estimator: str = "exact", projections: int = 1):
        super().__init__(encoder, decoder)
        self.weight, self.estimator, self.projections = weight, estimator, projections

    def penalty(self, x: Tensor, z: Tensor, extra: object) -> Tensor:
        if self.weight == 0:
            return z.new_zeros(())
        if self.estimator == "random_projection":
            return self.weight * jacobian_norm_estimate(self.encoder, x, self.projections).mean()
        jac = encoder_jacobian(self.encoder, x)
        return self.weight * jac.pow(2).sum((1, 2)).mean()


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)) per sample, summed over latent dimensions."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


class VariationalAutoencoder(Autoencoder):
    """Encoder emits (mu, logvar); trains on a reparameterised sample, scores from the mean.

    Penalty: beta · KL / n_features, i.e. the KL per input value, on the same scale as the MSE.
    """

    def __init__(self, encoder, decoder, n_features: int, beta: float = 1.0):
        super().__init__(encoder, decoder)
        self.n_features, self.beta = n_features, beta

    def _moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-20, 20)

    def encode(self, x: Tensor) -> Tensor:
        return self._moments(x)[0]

    def encode_for_loss(self, x: Tensor) -> tuple[Tensor, object]:
        mu, logvar = self._moments(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return z, (mu, logvar)

    def penalty(self, x: Tensor, z: Tensor, extra: object) -> Tensor:
        mu, logvar = extra
        return self.beta * gaussian_kl(mu, logvar).mean() / self.n_features
