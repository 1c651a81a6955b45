"""Build an autoencoder from a model config (`aeops.models.config.ModelConfig`, or its dict)."""

from __future__ import annotations

from typing import Any

from aeops import variants
from aeops.errors import ConfigError
from aeops.models.autoencoder import Autoencoder
from aeops.models.config import ModelConfig
from aeops.models.ensemble import AutoencoderEnsemble
from aeops.models.layout import Layout
from aeops.models.networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder


def resolve_output_activation(cfg: ModelConfig, unit_interval: bool) -> str:
    """`auto` → sigmoid when the scaled training data lies in [0, 1], identity otherwise."""
    if cfg.output_activation != "auto":
        return cfg.output_activation
    return "sigmoid" if unit_interval else "identity"


def build_autoencoder(
    cfg: ModelConfig | dict[str, Any],
    n_features: int,
    *,
    image_shape: tuple[int, int, int] | None = None,
    unit_interval: bool = False,
    members: int = 1,
    layout: dict[str, Any] | None = None,
) -> Autoencoder | AutoencoderEnsemble:
    """Encoder/decoder from the architecture params, wrapped by the chosen variant's builder.

    `members` > 1 builds that many (each with its own initialisation) as an `AutoencoderEnsemble`.
    `layout`: a mixed-type table's feature groups (aeops.models.layout); its one-hot blocks get logits.
    """
    if isinstance(cfg, dict):
        cfg = ModelConfig.model_validate(cfg)
    if members > 1:
        return AutoencoderEnsemble([build_autoencoder(cfg, n_features, image_shape=image_shape, layout=layout,
                                                      unit_interval=unit_interval) for _ in range(members)])
    groups = Layout.from_dict(layout)
    if groups is not None and groups.width != n_features:
        raise ValueError(f"a layout of {groups.width} columns for {n_features} features")
    if groups is not None and groups.blocks and cfg.output_activation == "sigmoid":
        raise ConfigError("output_activation 'sigmoid' squashes the logits of a categorical column; use auto or identity")
    out_act = resolve_output_activation(cfg, unit_interval and not (groups and groups.blocks))
    spec = variants.get(cfg.variant)
    code_width = spec.code_width(cfg.latent_dim)
    if cfg.architecture == "conv":
        if image_shape is None:
            raise ConfigError("architecture 'conv' needs image data (an image shape); use 'mlp' for tables")
        c = cfg.conv
        layers = {"kernel_size": c.kernel_size, "activation": c.activation, "batch_norm": c.batch_norm}
        encoder = ConvEncoder(image_shape, c.channels, out_features=code_width, **layers)
        decoder = ConvDecoder(image_shape, c.channels, latent_dim=cfg.latent_dim, output_activation=out_act, **layers)
    else:
        m = cfg.mlp
        layers = {"activation": m.activation, "batch_norm": m.batch_norm, "dropout": m.dropout}
        encoder = MLPEncoder(n_features, m.hidden, out_features=code_width, **layers)
        decoder = MLPDecoder(cfg.latent_dim, m.hidden, out_features=n_features, output_activation=out_act, **layers)

    section = getattr(cfg, spec.name) if spec.config is not None else None
    model = spec.build(encoder, decoder, section, n_features)
    model.layout = groups
    return model


def load_autoencoder(checkpoint: str) -> tuple[Autoencoder | AutoencoderEnsemble, dict[str, Any]]:
    """Rebuild the trained network from a Lightning checkpoint (`weights_only=True`), in evaluation mode.

    Reads the checkpoint's hyperparameters and the wrapped model's weights without importing
    Lightning (~4 s per process for `evaluate`).
    """
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    hp = dict(ckpt["hyper_parameters"])
    shape = tuple(hp["image_shape"]) if hp.get("image_shape") else None
    model = build_autoencoder(
        hp["model_cfg"],
        int(hp["n_features"]),
        image_shape=shape,
        unit_interval=bool(hp.get("unit_interval", False)),
        members=int(hp.get("members", 1)),
        layout=hp.get("layout"),
    )
    prefix = "model."
    model.load_state_dict({k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)})
    return model.eval(), hp
