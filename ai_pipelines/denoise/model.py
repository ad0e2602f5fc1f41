"""The denoising generator (a residual MONAI UNet on 2D slices) and its input scaling.

One network serves CT and MR: its input has two channels, the scaled slice and a constant
modality channel (0 for CT, 1 for MR), and it predicts a correction that is added to the
slice (residual learning: the network only has to model the noise).

Scaling (:func:`to_network` / :func:`from_network`): CT in HU / 1000, clipped to
[-1.024, 3.071]; MR divided by the volume's 99.5th foreground percentile
(:func:`~ai_pipelines.synthetic.noise_pairs.mr_scale`), so that both lie about in [-1, 2]
with noise of a few hundredths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from monai.networks.nets import UNet

from ai_pipelines.nn.device import autocast
from ai_pipelines.synthetic.noise_pairs import mr_scale

__all__ = [
    "DEFAULT_KWARGS",
    "MODALITY_CODE",
    "ResidualDenoiser",
    "build_denoiser",
    "denoise_slices",
    "from_network",
    "network_input",
    "to_network",
]

#: The reference network's architecture (a checkpoint's ``network_kwargs`` override these).
DEFAULT_KWARGS: dict[str, Any] = {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1}
#: Value of the modality channel.
MODALITY_CODE = {"CT": 0.0, "MR": 1.0}
_CT_RANGE = (-1024.0, 3071.0)


class ResidualDenoiser(torch.nn.Module):
    """``x + UNet([x, modality])``: a 2D UNet that predicts the noise-free slice's correction.

    Parameters
    ----------
    channels : Sequence[int]
        Features per UNet level.
    strides : Sequence[int]
        Down-sampling per level (the slice is padded to a multiple of their product).
    num_res_units : int
        Residual units per level.
    """

    def __init__(self, channels: list[int], strides: list[int], num_res_units: int = 1) -> None:
        super().__init__()
        self.unet = UNet(spatial_dims=2, in_channels=2, out_channels=1, channels=tuple(channels),
                         strides=tuple(strides), num_res_units=num_res_units, norm="BATCH")
        self.multiple = int(np.prod(strides))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 2, H, W)`` -> ``(N, 1, H, W)``; H and W must be multiples of :attr:`multiple`."""
        return x[:, :1] + self.unet(x)


def build_denoiser(overrides: Mapping[str, Any]) -> ResidualDenoiser:
    """The reference architecture with ``overrides`` (a checkpoint's ``network_kwargs``) applied."""
    return ResidualDenoiser(**{**DEFAULT_KWARGS, **dict(overrides)})


def to_network(values: np.ndarray, modality: str) -> tuple[np.ndarray, float]:
    """Scale CT (HU) or MR values for the network; return them and the MR scale (1000 for CT).

    Parameters
    ----------
    values : numpy.ndarray
        A slice or a volume.
    modality : str
        ``"CT"`` or ``"MR"``.

    Returns
    -------
    tuple[numpy.ndarray, float]
        Scaled float32 values, and the divisor that :func:`from_network` multiplies back.
    """
    if modality == "CT":
        return (np.clip(values, *_CT_RANGE) / 1000.0).astype(np.float32), 1000.0
    scale = mr_scale(values)
    return (values / scale).astype(np.float32), scale


def from_network(scaled: np.ndarray, modality: str, scale: float) -> np.ndarray:
    """Undo :func:`to_network` (CT clipped to its HU range, MR to >= 0, magnitudes being positive)."""
    values = scaled.astype(np.float32) * scale
    if modality == "CT":
        return np.clip(values, *_CT_RANGE)
    return np.clip(values, 0.0, None)


def network_input(scaled: np.ndarray, modality: str) -> np.ndarray:
    """``(z, y, x)`` scaled slices -> ``(z, 2, y, x)`` with the modality channel."""
    flag = np.full_like(scaled, MODALITY_CODE[modality])
    return np.stack([scaled, flag], axis=1).astype(np.float32)


def denoise_slices(
    network: torch.nn.Module, scaled: np.ndarray, modality: str, *, device: torch.device, batch_size: int = 8
) -> np.ndarray:
    """Run the network slice by slice, in batches (float16 autocast on CUDA).

    Parameters
    ----------
    network : torch.nn.Module
        A :class:`ResidualDenoiser` in eval mode on ``device``.
    scaled : numpy.ndarray
        ``(z, y, x)`` values from :func:`to_network`.
    modality : str
        ``"CT"`` or ``"MR"``.
    device : torch.device
        Where the batches run.
    batch_size : int, optional
        Slices per forward pass.

    Returns
    -------
    numpy.ndarray
        ``(z, y, x)`` float32 denoised values, still scaled.
    """
    multiple = int(getattr(network, "multiple", 8))
    z, rows, columns = scaled.shape
    pad_y, pad_x = -rows % multiple, -columns % multiple
    # edge padding: zero padding would look like an air border the network then "denoises"
    padded = np.pad(scaled, ((0, 0), (0, pad_y), (0, pad_x)), mode="edge")
    inputs = network_input(padded, modality)
    output = np.empty_like(padded)
    with autocast(device):
        for start in range(0, z, batch_size):
            batch = torch.from_numpy(inputs[start:start + batch_size]).to(device)
            output[start:start + batch_size] = network(batch)[:, 0].float().cpu().numpy()
    return output[:, :rows, :columns]
