"""A pix2pix-style conditional GAN training step: L1 * lambda + adversarial, then the discriminator.

Shared by the generative pipelines (``denoise``, ``synth_ct``). The generator maps an input
batch to an output batch of the target's shape; the discriminator is MONAI's
:class:`~monai.networks.nets.PatchDiscriminator` (or any module that returns a list whose
last item is the patch logits), scored with MONAI's
:class:`~monai.losses.PatchAdversarialLoss` (least squares by default, as in LSGAN, which
trains more stably than the log loss on the small batches we can afford on a CPU).

With ``conditional=True`` (pix2pix) the discriminator sees the input channels concatenated
before the image it judges, so build it with ``in_channels = input channels + output
channels``; with ``conditional=False`` it sees the image alone.

Typical use::

    generator, discriminator = UNet(...), make_patch_discriminator(in_channels=2)
    g_opt, d_opt = Adam(generator.parameters(), 2e-4), Adam(discriminator.parameters(), 2e-4)
    for inputs, targets in batches:
        losses = gan_step(generator, discriminator, g_opt, d_opt, inputs, targets,
                          weights=GanWeights(l1=100.0, adversarial=1.0))
        progress.status(f"L1 {losses['l1']:.4f}")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from monai.losses import PatchAdversarialLoss
from monai.networks.nets import PatchDiscriminator

__all__ = ["GanWeights", "discriminator_logits", "gan_step", "make_patch_discriminator"]


@dataclass(frozen=True, slots=True)
class GanWeights:
    """Weights of the generator's loss terms.

    Parameters
    ----------
    l1 : float, optional
        Weight of the L1 (pixel) loss; pix2pix uses 100 with images in [-1, 1].
    adversarial : float, optional
        Weight of the adversarial loss; 0 trains the generator on the pixel loss alone (the
        discriminator still learns, so that switching it on later starts from a fair critic).
    extra : float, optional
        Weight of ``extra_loss`` in :func:`gan_step` (e.g. 1 - SSIM, a perceptual loss).

    Raises
    ------
    ValueError
        If a weight is negative.
    """

    l1: float = 100.0
    adversarial: float = 1.0
    extra: float = 0.0

    def __post_init__(self) -> None:
        for name in ("l1", "adversarial", "extra"):
            if getattr(self, name) < 0:
                raise ValueError(f"GanWeights.{name}={getattr(self, name)!r} must be >= 0")


def make_patch_discriminator(
    *, in_channels: int, spatial_dims: int = 2, channels: int = 32, num_layers_d: int = 3
) -> PatchDiscriminator:
    """A PatchGAN discriminator (70x70 receptive field with 3 layers in 2D, as in pix2pix).

    Parameters
    ----------
    in_channels : int
        Channels it judges: input + output channels for a conditional GAN, else output channels.
    spatial_dims : int, optional
        2 for slices, 3 for volumes.
    channels : int, optional
        Features of the first layer (doubled per layer).
    num_layers_d : int, optional
        Strided layers.

    Returns
    -------
    PatchDiscriminator
        Returns a list of intermediate features; the last item is the patch logits map.
    """
    return PatchDiscriminator(
        spatial_dims=spatial_dims, channels=channels, in_channels=in_channels, out_channels=1,
        num_layers_d=num_layers_d, norm="INSTANCE",
    )


def discriminator_logits(
    discriminator: torch.nn.Module, inputs: torch.Tensor, images: torch.Tensor, *, conditional: bool
) -> torch.Tensor:
    """The discriminator's patch logits for ``images`` (conditioned on ``inputs`` when asked).

    Parameters
    ----------
    discriminator : torch.nn.Module
        Returns a tensor or a list whose last item is the logits (MONAI's PatchDiscriminator).
    inputs : torch.Tensor
        The generator's input batch ``(N, C_in, ...)``.
    images : torch.Tensor
        Real or generated batch ``(N, C_out, ...)``.
    conditional : bool
        Concatenate ``inputs`` before ``images`` along the channels (pix2pix).

    Returns
    -------
    torch.Tensor
        ``(N, 1, ...)`` logits, one per patch.
    """
    seen = torch.cat([inputs, images], dim=1) if conditional else images
    output = discriminator(seen)
    return output[-1] if isinstance(output, (list, tuple)) else output


def gan_step(
    generator: torch.nn.Module,
    discriminator: torch.nn.Module,
    generator_optimizer: torch.optim.Optimizer,
    discriminator_optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    weights: GanWeights | None = None,
    conditional: bool = True,
    adversarial_loss: PatchAdversarialLoss | None = None,
    extra_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    mask: torch.Tensor | None = None,
) -> dict[str, float]:
    """One generator update, then one discriminator update; return the losses.

    Generator: ``l1 * |G(x) - y| + adversarial * LSGAN(D(x, G(x)) -> real) + extra * extra_loss``.
    Discriminator: ``(LSGAN(D(x, y) -> real) + LSGAN(D(x, G(x).detach()) -> fake)) / 2``.
    Both networks are put in train mode.

    Parameters
    ----------
    generator, discriminator : torch.nn.Module
        The networks, on the device of ``inputs``.
    generator_optimizer, discriminator_optimizer : torch.optim.Optimizer
        Their optimisers.
    inputs : torch.Tensor
        ``(N, C_in, ...)`` input batch (noisy image, MR, ...).
    targets : torch.Tensor
        ``(N, C_out, ...)`` target batch (clean image, CT, ...).
    weights : GanWeights or None, optional
        Loss weights; pix2pix's (L1 100, adversarial 1) by default.
    conditional : bool, optional
        The discriminator sees the input too (pix2pix); see :func:`discriminator_logits`.
    adversarial_loss : PatchAdversarialLoss or None, optional
        Least squares by default.
    extra_loss : Callable[[Tensor, Tensor], Tensor] or None, optional
        ``(output, target) -> scalar`` added with ``weights.extra`` (SSIM, perceptual, ...).
    mask : torch.Tensor or None, optional
        ``(N, 1 or C_out, ...)`` weights for the L1 term (e.g. a body mask); the mean over
        the mask is used. None: plain mean.

    Returns
    -------
    dict[str, float]
        ``l1``, ``adversarial`` (generator's), ``extra`` (0 without one), ``generator``
        (the weighted total), ``discriminator``, ``d_real`` and ``d_fake`` (mean logits).

    Raises
    ------
    ValueError
        If inputs and targets differ in batch size or spatial shape, or the mask does not fit.
    """
    if inputs.shape[0] != targets.shape[0] or inputs.shape[2:] != targets.shape[2:]:
        raise ValueError(f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} do not pair up")
    weights = weights or GanWeights()
    criterion = adversarial_loss or PatchAdversarialLoss(criterion="least_squares")
    generator.train()
    discriminator.train()

    # generator: the discriminator's weights get gradients here but are not stepped
    generator_optimizer.zero_grad(set_to_none=True)
    outputs = generator(inputs)
    difference = torch.abs(outputs - targets)
    if mask is None:
        l1 = difference.mean()
    else:
        if mask.shape[0] != targets.shape[0] or mask.shape[2:] != targets.shape[2:]:
            raise ValueError(f"mask {tuple(mask.shape)} does not fit targets {tuple(targets.shape)}")
        mask = mask.to(difference.dtype).expand_as(difference)
        l1 = (difference * mask).sum() / mask.sum().clamp_min(1.0)
    fake_logits = discriminator_logits(discriminator, inputs, outputs, conditional=conditional)
    adversarial = criterion(fake_logits, target_is_real=True, for_discriminator=False)
    extra = extra_loss(outputs, targets) if extra_loss is not None else torch.zeros((), device=outputs.device)
    total = weights.l1 * l1 + weights.adversarial * adversarial + weights.extra * extra
    total.backward()
    generator_optimizer.step()

    # discriminator: real pairs against the generator's (detached) outputs
    discriminator_optimizer.zero_grad(set_to_none=True)
    real_logits = discriminator_logits(discriminator, inputs, targets, conditional=conditional)
    fake_logits = discriminator_logits(discriminator, inputs, outputs.detach(), conditional=conditional)
    d_loss = 0.5 * (criterion(real_logits, target_is_real=True, for_discriminator=True)
                    + criterion(fake_logits, target_is_real=False, for_discriminator=True))
    d_loss.backward()
    discriminator_optimizer.step()

    return {
        "l1": float(l1.detach()),
        "adversarial": float(adversarial.detach()),
        "extra": float(extra.detach()),
        "generator": float(total.detach()),
        "discriminator": float(d_loss.detach()),
        "d_real": float(real_logits.detach().mean()),
        "d_fake": float(fake_logits.detach().mean()),
    }
