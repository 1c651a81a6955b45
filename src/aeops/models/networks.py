"""Encoder/decoder builders: pure `nn.Module`s on flat inputs of shape (batch, n_features).

Every encoder exposes `features(x) -> (out, hidden)`, where `hidden` lists the pre-activations of its
hidden layers (used by the sparse variant's KL penalty); `forward(x)` returns `out` only.
"""

from __future__ import annotations

from torch import Tensor, nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
}


def output_layer(name: str) -> nn.Module:
    """`sigmoid` for data scaled to [0, 1], `identity` otherwise."""
    return nn.Sigmoid() if name == "sigmoid" else nn.Identity()


class _Block(nn.Module):
    """Affine map (linear or conv), then optional batch norm, activation and dropout."""

    def __init__(self, affine: nn.Module, norm: nn.Module | None, act: str, dropout: float = 0.0):
        super().__init__()
        self.affine = affine
        self.norm = norm or nn.Identity()
        self.act = ACTIVATIONS[act]()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pre = self.norm(self.affine(x))
        return self.drop(self.act(pre)), pre


class MLPEncoder(nn.Module):
    """in_features → hidden widths → out_features (no activation on the code)."""

    def __init__(
        self,
        in_features: int,
        hidden: list[int],
        *,
        out_features: int,
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        sizes = [in_features, *hidden]
        self.blocks = nn.ModuleList(
            _Block(nn.Linear(a, b), nn.BatchNorm1d(b) if batch_norm else None, activation, dropout)
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.head = nn.Linear(sizes[-1], out_features)

    def features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        hidden = []
        for block in self.blocks:
            x, pre = block(x)
            hidden.append(pre)
        return self.head(x), hidden

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)[0]


class MLPDecoder(nn.Module):
    """latent → reversed hidden widths → out_features, then the output activation."""

    def __init__(
        self,
        latent_dim: int,
        hidden: list[int],
        *,
        out_features: int,
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
        output_activation: str = "identity",
    ):
        super().__init__()
        sizes = [latent_dim, *reversed(hidden)]
        self.blocks = nn.ModuleList(
            _Block(nn.Linear(a, b), nn.BatchNorm1d(b) if batch_norm else None, activation, dropout)
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.head = nn.Linear(sizes[-1], out_features)
        self.out = output_layer(output_activation)

    def forward(self, z: Tensor) -> Tensor:
        for block in self.blocks:
            z, _ = block(z)
        return self.out(self.head(z))


def _conv_sizes(size: int, n: int, kernel: int) -> list[int]:
    """Spatial sizes after each stride-2 convolution with padding kernel // 2."""
    sizes = [size]
    for _ in range(n):
        sizes.append((sizes[-1] + 2 * (kernel // 2) - kernel) // 2 + 1)
    return sizes


class ConvEncoder(nn.Module):
    """Image (C, H, W) given flat → stride-2 conv blocks → linear code."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: list[int],
        *,
        out_features: int,
        kernel_size: int = 3,
        activation: str = "relu",
        batch_norm: bool = False,
    ):
        super().__init__()
        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        hs, ws = _conv_sizes(h, len(channels), kernel_size), _conv_sizes(w, len(channels), kernel_size)
        chans = [c, *channels]
        self.blocks = nn.ModuleList(
            _Block(
                nn.Conv2d(a, b, kernel_size, stride=2, padding=kernel_size // 2),
                nn.BatchNorm2d(b) if batch_norm else None,
                activation,
            )
            for a, b in zip(chans[:-1], chans[1:])
        )
        self.head = nn.Linear(chans[-1] * hs[-1] * ws[-1], out_features)

    def features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = x.reshape(x.shape[0], *self.image_shape)
        hidden = []
        for block in self.blocks:
            x, pre = block(x)
            hidden.append(pre.flatten(1))
        return self.head(x.flatten(1)), hidden

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)[0]


class ConvDecoder(nn.Module):
    """Linear code → transposed stride-2 conv blocks mirroring `ConvEncoder` → flat image."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: list[int],
        *,
        latent_dim: int,
        kernel_size: int = 3,
        activation: str = "relu",
        batch_norm: bool = False,
        output_activation: str = "identity",
    ):
        super().__init__()
        c, h, w = image_shape
        hs, ws = _conv_sizes(h, len(channels), kernel_size), _conv_sizes(w, len(channels), kernel_size)
        self.start = (channels[-1], hs[-1], ws[-1])
        self.head = nn.Linear(latent_dim, channels[-1] * hs[-1] * ws[-1])
        self.head_act = ACTIVATIONS[activation]()
        chans = [*reversed(channels), c]
        pad = kernel_size // 2
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
            src, dst = (hs[-1 - i], ws[-1 - i]), (hs[-2 - i], ws[-2 - i])
            extra = tuple(d - ((s - 1) * 2 - 2 * pad + kernel_size) for s, d in zip(src, dst))
            layers.append(nn.ConvTranspose2d(a, b, kernel_size, 2, pad, output_padding=extra))
            if i < len(channels) - 1:
                if batch_norm:
                    layers.append(nn.BatchNorm2d(b))
                layers.append(ACTIVATIONS[activation]())
        self.deconv = nn.Sequential(*layers)
        self.out = output_layer(output_activation)

    def forward(self, z: Tensor) -> Tensor:
        x = self.head_act(self.head(z)).reshape(z.shape[0], *self.start)
        return self.out(self.deconv(x).flatten(1))


__all__ = [
    "ConvDecoder",
    "ConvEncoder",
    "MLPDecoder",
    "MLPEncoder",
]
