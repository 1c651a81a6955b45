"""Penalties against direct computations, builder shapes, and train/eval behaviour of each variant."""

import pytest
import torch
from torch.autograd.functional import jacobian
from torch.distributions import Normal, kl_divergence

from aeops import variants
from aeops.config import ModelConfig
from aeops.errors import ConfigError
from aeops.models import build_autoencoder
from aeops.models.autoencoder import (
    ContractiveAutoencoder,
    DenoisingAutoencoder,
    SparseAutoencoder,
    VariationalAutoencoder,
    encoder_jacobian,
    gaussian_kl,
    jacobian_norm_estimate,
)
from aeops.models.networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

VARIANTS = variants.names()  # every registered variant


def small_mlp(d=6, latent=3):
    torch.manual_seed(0)
    return MLPEncoder(d, [5, 4], out_features=latent, activation="tanh"), MLPDecoder(latent, [5, 4], out_features=d, activation="tanh")


def test_contractive_penalty_matches_autograd_jacobian_of_whole_encoder():
    enc, dec = small_mlp()
    x = torch.randn(4, 6)
    model = ContractiveAutoencoder(enc, dec, weight=0.5)
    direct = torch.stack([jacobian(lambda v: enc(v.unsqueeze(0)).squeeze(0), xi) for xi in x])
    assert torch.allclose(encoder_jacobian(enc, x), direct, atol=1e-6)
    expected = 0.5 * direct.pow(2).sum((1, 2)).mean()
    out = model(x)
    assert torch.allclose(out.reg_loss, expected, atol=1e-6)
    assert torch.allclose(out.loss, out.recon_loss + expected, atol=1e-6)
    # The penalty is differentiable w.r.t. the encoder's parameters (it shapes training).
    out.reg_loss.backward()
    assert enc.blocks[0].affine.weight.grad.abs().sum() > 0


def test_random_projection_estimate_is_unbiased_and_trains_the_encoder():
    enc, dec = small_mlp()
    x = torch.randn(4, 6)
    exact = encoder_jacobian(enc, x).pow(2).sum((1, 2))
    torch.manual_seed(1)
    estimate = jacobian_norm_estimate(enc, x, projections=4000)
    assert torch.allclose(estimate, exact, rtol=0.08), (estimate, exact)
    model = ContractiveAutoencoder(enc, dec, weight=0.5, estimator="random_projection", projections=2)
    out = model(x)
    assert out.reg_loss > 0 and not torch.allclose(out.reg_loss, 0.5 * exact.mean(), rtol=1e-6)
    out.reg_loss.backward()
    assert enc.blocks[0].affine.weight.grad.abs().sum() > 0


def test_contractive_random_projection_from_params_on_conv():
    cfg = {"variant": "contractive", "architecture": "conv", "latent_dim": 3,
           "contractive": {"estimator": "random_projection", "projections": 2}}
    model = build_autoencoder(cfg, 64, image_shape=(1, 8, 8), unit_interval=True)
    assert (model.estimator, model.projections) == ("random_projection", 2)
    out = model(torch.rand(5, 64))
    out.loss.backward()
    assert out.reg_loss > 0 and torch.isfinite(out.loss)


def test_contractive_uses_every_encoder_layer_not_just_the_first():
    enc, dec = small_mlp()
    x = torch.randn(3, 6)
    before = encoder_jacobian(enc, x)
    with torch.no_grad():
        enc.head.weight.mul_(2.0)  # only the last layer changes
    assert torch.allclose(encoder_jacobian(enc, x), 2 * before, atol=1e-6)


def test_vae_kl_matches_closed_form_and_distributions():
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(gaussian_kl(mu, logvar), ref, atol=1e-5)
    assert torch.allclose(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_vae_penalty_is_beta_kl_per_input_value_and_eval_scores_from_the_mean():
    torch.manual_seed(0)
    enc, dec = MLPEncoder(6, [5], out_features=2 * 3), MLPDecoder(3, [5], out_features=6)
    model = VariationalAutoencoder(enc, dec, n_features=6, beta=2.0)
    x = torch.randn(4, 6)
    mu, logvar = enc(x).chunk(2, 1)
    out = model.eval()(x)
    assert torch.allclose(out.z, mu)
    assert torch.allclose(out.reg_loss, 2.0 * gaussian_kl(mu, logvar).mean() / 6, atol=1e-6)
    assert torch.equal(model(x).recon_x, model(x).recon_x)  # deterministic at evaluation
    model.train()
    assert not torch.allclose(model(x).z, mu)  # sampled while training


def test_sparse_penalty_matches_direct_l1_and_kl():
    enc, dec = small_mlp()
    model = SparseAutoencoder(enc, dec, l1_weight=0.1, kl_weight=0.2, target=0.05)
    x = torch.randn(8, 6)
    z, hidden = enc.features(x)
    rho = 0.05
    kl = 0.0
    for pre in hidden:
        r = torch.sigmoid(pre).mean(0)
        kl = kl + (rho * torch.log(rho / r) + (1 - rho) * torch.log((1 - rho) / (1 - r))).sum()
    expected = 0.1 * z.abs().sum(1).mean() + 0.2 * kl
    assert torch.allclose(model.eval()(x).reg_loss, expected, atol=1e-5)
    assert len(hidden) == 2


@pytest.mark.parametrize("noise", ["gaussian", "masking"])
def test_denoising_noise_only_while_training(noise):
    enc, dec = small_mlp()
    model = DenoisingAutoencoder(enc, dec, noise=noise, std=0.5, mask_prob=0.5)
    x = torch.rand(16, 6) + 0.1
    model.eval()
    out = model(x)
    assert torch.allclose(out.recon_x, dec(enc(x)))  # evaluation sees the clean input
    assert torch.equal(model(x).recon_x, out.recon_x)  # and is deterministic
    model.train()
    assert not torch.equal(model(x).recon_x, model(x).recon_x)  # training draws fresh noise each step
    noisy = model.corrupt(x)
    assert not torch.allclose(noisy, x)
    if noise == "masking":
        assert ((noisy == 0) | (noisy == x)).all()
    torch.manual_seed(1)
    out_train = model(x)
    assert not torch.allclose(out_train.z, enc(x))  # encoder saw a corrupted input
    assert torch.allclose(out_train.recon_loss, torch.nn.functional.mse_loss(out_train.recon_x, x))


@pytest.mark.parametrize("shape,channels,kernel", [((1, 8, 8), [16, 32], 3), ((1, 28, 28), [8, 16, 32], 5), ((3, 7, 9), [4], 3)])
def test_conv_builders_shapes(shape, channels, kernel):
    d = shape[0] * shape[1] * shape[2]
    enc = ConvEncoder(shape, channels, out_features=5, kernel_size=kernel)
    dec = ConvDecoder(shape, channels, latent_dim=5, kernel_size=kernel, output_activation="sigmoid")
    x = torch.rand(3, d)
    z, hidden = enc.features(x)
    assert z.shape == (3, 5) and len(hidden) == len(channels)
    recon = dec(z)
    assert recon.shape == (3, d) and (recon >= 0).all() and (recon <= 1).all()


def test_deep_conv_on_tiny_images_keeps_the_shape():
    cfg = ModelConfig(architecture="conv", latent_dim=2, conv={"channels": [4, 4, 4, 4, 4]})
    model = build_autoencoder(cfg, 4, image_shape=(1, 2, 2))
    assert model.reconstruct(torch.rand(3, 4)).shape == (3, 4)


def test_conv_on_table_is_a_config_error():
    with pytest.raises(ConfigError, match="needs image data"):
        build_autoencoder(ModelConfig(architecture="conv"), 10, image_shape=None)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_every_variant_and_builder_trains_one_step(variant, arch):
    torch.manual_seed(0)
    if arch not in variants.get(variant).architectures:  # refused when the params are read, in one line
        with pytest.raises(ValueError, match=f"variant '{variant}' needs architecture"):
            ModelConfig(variant=variant, architecture=arch)
        return
    cfg = ModelConfig(variant=variant, architecture=arch, latent_dim=4, mlp={"hidden": [16]}, conv={"channels": [4, 8]})
    model = build_autoencoder(cfg, 64, image_shape=(1, 8, 8), unit_interval=True)
    x = torch.rand(10, 64)
    out = model.train()(x)
    assert out.recon_x.shape == x.shape and out.z.shape == (10, 4)
    assert torch.isfinite(out.loss)
    assert (out.reg_loss > 0) == (variant not in ("vanilla", "denoising"))  # the penalty-free ones
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    assert model.encode(x).shape == (10, 4)
    assert torch.equal(model.reconstruct(x), model.reconstruct(x))


def test_output_activation_auto_follows_data_range():
    cfg = ModelConfig(latent_dim=2, mlp={"hidden": [4]})
    x = torch.randn(5, 3) * 10
    assert ((build_autoencoder(cfg, 3, image_shape=None, unit_interval=True).reconstruct(x) - 0.5).abs() <= 0.5).all()
    assert isinstance(build_autoencoder(cfg, 3, image_shape=None, unit_interval=False).decoder.out, torch.nn.Identity)


def test_ensemble_members_differ_and_its_loss_is_their_mean():
    from aeops.models.ensemble import AutoencoderEnsemble, reconstruct_members

    torch.manual_seed(0)
    cfg = {"latent_dim": 2, "mlp": {"hidden": [8]}}
    ens = build_autoencoder(cfg, 5, members=3)
    assert isinstance(ens, AutoencoderEnsemble) and len(ens.members) == 3
    w = [next(m.parameters()) for m in ens.members]
    assert not torch.equal(w[0], w[1])  # each its own initialisation
    x = torch.randn(16, 5)
    ens.eval()
    out = ens(x)
    member_losses = torch.stack([m(x).loss for m in ens.members])
    assert torch.allclose(out.loss, member_losses.mean())
    assert reconstruct_members(ens, x).shape == (3, 16, 5)
    assert torch.equal(ens.reconstruct(x), ens.members[0].reconstruct(x))  # users see member 0
    single = build_autoencoder(cfg, 5)
    assert reconstruct_members(single, x).shape == (1, 16, 5)
    out.loss.backward()
    assert all(p.grad is not None for p in ens.parameters())  # every member trains
