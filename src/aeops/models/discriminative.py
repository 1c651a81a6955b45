"""An autoencoder with a discriminative head that segments defects (after DRAEM, Zavrtanik et al., ICCV 2021).

Training plants synthetic defects in normal images: a blob mask from thresholded low-frequency noise,
filled with foreign content (another training image flipped, smooth noise, or a flat value) blended
into the image. The autoencoder learns to reconstruct the clean image from the defective one (as a
denoising autoencoder does); a small fully convolutional head sees the input beside its reconstruction
and learns the defect mask (focal loss). A residual alone says where the reconstruction differs; the
head learns which differences are defects, so a texture's normal high-frequency detail, which no
autoencoder reconstructs exactly, stops lighting up the map.

For scoring, `score_target(x)` is what the scoring rule compares each row with: x minus the square root of
the head's defect probability in every channel, so that the rule's squared residual of a pixel is that
probability. Everything the rule does (top fraction, the threshold, anomaly maps, the pixel threshold) then
applies to the head's map (`score_smoothing` smooths the probability's root before squaring);
`reconstruct` stays the autoencoder's reconstruction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aeops.models.autoencoder import AEOutput, Autoencoder, trimmed_mean

MASK_SCALES = (2, 4, 8)  # noise cells across the image: blobs of about a quarter to a sixteenth of its size
MASK_SHARE = (0.02, 0.25)  # a synthetic defect covers this share of its image (uniform)
VAL_SEED = 1234  # validation draws the same defects every epoch, so val/loss compares across epochs


class SegmentationHead(nn.Module):
    """(input, reconstruction) → defect logits per pixel: two conv blocks, one pooled level, and back up."""

    def __init__(self, channels: int, widths: list[int]):
        super().__init__()
        a, b = widths

        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.ReLU(), nn.Conv2d(o, o, 3, padding=1), nn.ReLU())

        self.down, self.bottom = block(2 * channels, a), block(a, b)
        self.up = block(a + b, a)
        self.out = nn.Conv2d(a, 1, 1)

    def forward(self, x: Tensor, recon: Tensor) -> Tensor:
        skip = self.down(torch.cat([x, recon], dim=1))
        deep = self.bottom(F.max_pool2d(skip, 2, ceil_mode=True))
        deep = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(self.up(torch.cat([skip, deep], dim=1)))


def _uniform(n: int, low: float, high: float, gen: torch.Generator | None, device: torch.device) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, device=device)


def defect_masks(n: int, size: tuple[int, int], *, share: float, gen: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> Tensor:
    """(n, 1, h, w) 0/1 blob masks: low-frequency noise above its own quantile; each image has one with
    probability `share` (else an empty mask)."""
    h, w = size
    device = torch.device(device)
    scale = MASK_SCALES[int(torch.randint(len(MASK_SCALES), (1,), generator=gen, device=device))]
    grid = torch.randn(n, 1, scale + 1, scale + 1, generator=gen, device=device)
    noise = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False).flatten(1)
    cover = _uniform(n, *MASK_SHARE, gen, device)
    rank = ((1 - cover) * (h * w - 1)).long().clamp(0, h * w - 1)
    cut = noise.sort(dim=1).values.gather(1, rank[:, None])[:, 0]
    masks = (noise > cut[:, None]).float() * (torch.rand(n, 1, generator=gen, device=device) < share).float()
    return masks.reshape(n, 1, h, w)


def plant_defects(x: Tensor, *, share: float, gen: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(images with a synthetic defect, their (n, 1, h, w) masks) for (n, c, h, w) images: in each mask, the
    image is blended with foreign content: the next image of the batch flipped both ways, smooth noise over the
    batch's value range, or a flat value of that range (one kind per image), at a random opacity of 40–100 %."""
    n, c, h, w = x.shape
    device = x.device
    masks = defect_masks(n, (h, w), share=share, gen=gen, device=device)
    lo, hi = x.amin(), x.amax()
    span = (hi - lo).clamp_min(1e-6)
    other = torch.roll(x, 1, dims=0).flip(-1, -2)
    smooth = F.interpolate(torch.rand(n, c, max(h // 4, 1), max(w // 4, 1), generator=gen, device=device), size=(h, w),
                           mode="bilinear", align_corners=False) * span + lo
    flat = (_uniform(n, 0, 1, gen, device) * span + lo).reshape(n, 1, 1, 1).expand(n, c, h, w)
    kind = torch.randint(3, (n, 1, 1, 1), generator=gen, device=device)
    foreign = torch.where(kind == 0, other, torch.where(kind == 1, smooth, flat))
    opacity = _uniform(n, 0.4, 1.0, gen, device).reshape(n, 1, 1, 1) * masks
    return x * (1 - opacity) + foreign * opacity, masks


def focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    """Per-image mean focal loss (Lin et al.): cross-entropy down-weighted where the pixel is already right."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return ((1 - torch.exp(-bce)) ** gamma * bce).flatten(1).mean(dim=1)


class DiscriminativeAutoencoder(Autoencoder):
    """An autoencoder trained to undo synthetic defects, with a head that segments them (see the module)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, *, image_shape: tuple[int, int, int],
                 head_channels: list[int], defect_share: float = 0.5, head_weight: float = 1.0):
        super().__init__(encoder, decoder)
        self.image_shape = tuple(image_shape)
        self.head = SegmentationHead(image_shape[0], head_channels)
        self.defect_share, self.head_weight = defect_share, head_weight

    def _images(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.image_shape)

    def defect_probability(self, x: Tensor) -> Tensor:
        """(n, h, w): the head's probability that each pixel is a defect."""
        recon = self.reconstruct(x)
        return torch.sigmoid(self.head(self._images(x), self._images(recon)))[:, 0]

    def score_target(self, x: Tensor) -> Tensor:
        p = self.defect_probability(x).unsqueeze(1).expand(-1, self.image_shape[0], -1, -1)
        return x - p.sqrt().reshape(x.shape)

    def penalty(self, x: Tensor, z: Tensor, extra: object) -> Tensor:
        """The head's loss is added in `forward` (it needs the synthetic masks); none beside it."""
        return z.new_zeros(())

    def forward(self, x: Tensor, trim: float = 0.0) -> AEOutput:
        """Plant defects (training: fresh draws; validation and test: the same draws every epoch), reconstruct the
        clean images from them, segment the defects; loss = MSE to the clean image + head_weight · focal loss."""
        gen = None
        if not self.training:
            gen = torch.Generator(device=x.device).manual_seed(VAL_SEED)
        images = self._images(x)
        planted, masks = plant_defects(images, share=self.defect_share, gen=gen)
        flat = planted.reshape(x.shape)
        z = self.encoder(flat)
        out = self.decoder(z)
        rows = ((out - x) ** 2).flatten(1).mean(dim=1)
        seg = focal_loss(self.head(planted, self._images(out)), masks)
        recon_loss = trimmed_mean(rows, trim) if trim > 0 else rows.mean()
        reg = self.head_weight * (trimmed_mean(seg, trim) if trim > 0 else seg.mean())
        return AEOutput(recon_loss + reg, recon_loss, reg, z, out)
