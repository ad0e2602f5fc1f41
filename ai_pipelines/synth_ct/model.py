"""The synth_ct networks: a 2D MONAI UNet generator (MR slice -> CT slice) and its PatchGAN critic.

The generator works on axial slices resampled to :data:`PIXEL_SPACING_MM` and normalised as
:mod:`ai_pipelines.synth_ct.preprocess` describes; it outputs CT scaled to [-1, 1] over
:data:`~ai_pipelines.synthetic.mr_from_ct.HU_RANGE` (a final tanh keeps it there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from monai.networks.nets import UNet

from ai_pipelines.nn.gan import make_patch_discriminator
from ai_pipelines.synthetic.mr_from_ct import HU_RANGE

__all__ = [
    "DEFAULT_GENERATOR",
    "PIXEL_SPACING_MM",
    "SIZE_MULTIPLE",
    "build_discriminator",
    "build_generator",
    "hu_to_unit",
    "unit_to_hu",
]

#: In-plane pixel spacing the network is trained and run at (mm).
PIXEL_SPACING_MM = 1.5
#: Slice sizes must be a multiple of this (three stride-2 levels).
SIZE_MULTIPLE = 8

#: Keyword arguments of the default generator (a checkpoint may override them).
DEFAULT_GENERATOR: Mapping[str, Any] = {
    "channels": (16, 32, 64, 128),
    "strides": (2, 2, 2),
    "num_res_units": 1,
}


class _Generator(torch.nn.Module):
    """MONAI UNet followed by tanh, so that the output stays in the scaled HU range."""

    def __init__(self, channels: tuple[int, ...], strides: tuple[int, ...], num_res_units: int) -> None:
        super().__init__()
        self.unet = UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=tuple(channels),
                         strides=tuple(strides), num_res_units=num_res_units, norm="INSTANCE")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.unet(x))


def build_generator(overrides: Mapping[str, Any]) -> torch.nn.Module:
    """The generator, with :data:`DEFAULT_GENERATOR` updated by ``overrides``.

    Parameters
    ----------
    overrides : Mapping[str, Any]
        ``channels``, ``strides``, ``num_res_units`` (from a checkpoint's ``network_kwargs``).

    Returns
    -------
    torch.nn.Module
        Maps ``(N, 1, H, W)`` normalised MR to ``(N, 1, H, W)`` CT in [-1, 1].

    Raises
    ------
    TypeError
        If an override is not one of those names.
    """
    unknown = set(overrides) - set(DEFAULT_GENERATOR)
    if unknown:
        raise TypeError(f"unknown generator argument(s) {', '.join(sorted(unknown))}")
    kwargs = {**DEFAULT_GENERATOR, **overrides}
    return _Generator(tuple(kwargs["channels"]), tuple(kwargs["strides"]), int(kwargs["num_res_units"]))


def build_discriminator() -> torch.nn.Module:
    """The conditional PatchGAN critic: sees the MR and a (real or generated) CT, 2 channels."""
    return make_patch_discriminator(in_channels=2, spatial_dims=2, channels=32, num_layers_d=3)


def hu_to_unit(hu: np.ndarray) -> np.ndarray:
    """HU -> [-1, 1] over :data:`HU_RANGE` (clipped)."""
    low, high = HU_RANGE
    return (2.0 * (np.clip(hu, low, high) - low) / (high - low) - 1.0).astype(np.float32)


def unit_to_hu(unit: np.ndarray) -> np.ndarray:
    """[-1, 1] -> HU over :data:`HU_RANGE`."""
    low, high = HU_RANGE
    return ((np.asarray(unit, dtype=np.float32) + 1.0) * 0.5 * (high - low) + low).astype(np.float32)
