"""ai_pipelines.nn.gan: the shared pix2pix training step (used by denoise and synth_ct)."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet

from ai_pipelines.nn.gan import GanWeights, discriminator_logits, gan_step, make_patch_discriminator


def _networks(conditional: bool = True) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    generator = UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(4, 8), strides=(2,))
    discriminator = make_patch_discriminator(in_channels=2 if conditional else 1, channels=4, num_layers_d=2)
    return generator, discriminator


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    targets = torch.rand(2, 1, 32, 32, generator=generator)
    return targets + 0.2 * torch.randn(2, 1, 32, 32, generator=generator), targets


def test_step_updates_both_networks_and_reports_finite_losses() -> None:
    generator, discriminator = _networks()
    g_before = [p.detach().clone() for p in generator.parameters()]
    d_before = [p.detach().clone() for p in discriminator.parameters()]
    g_opt = torch.optim.Adam(generator.parameters(), 1e-3)
    d_opt = torch.optim.Adam(discriminator.parameters(), 1e-3)
    inputs, targets = _batch()
    losses = gan_step(generator, discriminator, g_opt, d_opt, inputs, targets)
    assert set(losses) == {"l1", "adversarial", "extra", "generator", "discriminator", "d_real", "d_fake"}
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert losses["generator"] == pytest.approx(100 * losses["l1"] + losses["adversarial"], rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(g_before, generator.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, discriminator.parameters(), strict=True))


def test_l1_falls_over_steps() -> None:
    generator, discriminator = _networks()
    g_opt = torch.optim.Adam(generator.parameters(), 3e-3)
    d_opt = torch.optim.Adam(discriminator.parameters(), 1e-3)
    inputs, targets = _batch()
    first = gan_step(generator, discriminator, g_opt, d_opt, inputs, targets)["l1"]
    for _ in range(15):
        last = gan_step(generator, discriminator, g_opt, d_opt, inputs, targets)["l1"]
    assert last < 0.7 * first


def test_unconditional_mask_and_extra_loss() -> None:
    generator, discriminator = _networks(conditional=False)
    g_opt = torch.optim.SGD(generator.parameters(), 1e-3)
    d_opt = torch.optim.SGD(discriminator.parameters(), 1e-3)
    inputs, targets = _batch()
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:24, 8:24] = 1
    losses = gan_step(generator, discriminator, g_opt, d_opt, inputs, targets, conditional=False, mask=mask,
                      weights=GanWeights(l1=10, adversarial=0.5, extra=2),
                      extra_loss=lambda out, tgt: ((out - tgt) ** 2).mean())
    assert losses["extra"] > 0
    assert losses["generator"] == pytest.approx(
        10 * losses["l1"] + 0.5 * losses["adversarial"] + 2 * losses["extra"], rel=1e-5)
    logits = discriminator_logits(discriminator, inputs, targets, conditional=False)
    assert logits.shape[:2] == (2, 1)


def test_refuses_mismatched_batches_and_negative_weights() -> None:
    generator, discriminator = _networks()
    g_opt = torch.optim.SGD(generator.parameters(), 1e-3)
    d_opt = torch.optim.SGD(discriminator.parameters(), 1e-3)
    inputs, targets = _batch()
    with pytest.raises(ValueError, match="do not pair up"):
        gan_step(generator, discriminator, g_opt, d_opt, inputs, targets[:1])
    with pytest.raises(ValueError, match="must be >= 0"):
        GanWeights(l1=-1)
