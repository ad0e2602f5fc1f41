"""MR volume -> synthetic CT in HU with the generator, slice by slice, on the MR's exact grid.

The steps are separate functions so that the pipeline can time them and the bench can time
the bare forward pass (:func:`translate`):

1. :func:`~ai_pipelines.synth_ct.preprocess.normalise_mr` (body mask, percentile scale);
2. :func:`prepare_slices`: resample each axial slice in-plane to 1.5 mm, pad to a multiple of 8;
3. :func:`translate`: the generator on batches of slices (inference mode, AMP on CUDA);
4. :func:`restore_slices`: crop, resample back to the MR's rows and columns, HU, air outside
   the body.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ai_pipelines.nn.device import autocast
from ai_pipelines.synth_ct.model import PIXEL_SPACING_MM, SIZE_MULTIPLE, unit_to_hu
from ai_pipelines.synth_ct.preprocess import normalise_mr, pad_to_multiple, resize_slices
from ai_pipelines.synthetic.mr_from_ct import AIR_HU, HU_RANGE

__all__ = ["SliceGeometry", "prepare_slices", "restore_slices", "synthesise", "translate"]

BATCH_SLICES = 16


@dataclass(frozen=True, slots=True)
class SliceGeometry:
    """Sizes to undo :func:`prepare_slices`: the MR's (rows, columns) and the resampled ones."""

    original: tuple[int, int]
    resampled: tuple[int, int]


def prepare_slices(normalised: np.ndarray, pixel_spacing: tuple[float, float]) -> tuple[torch.Tensor, SliceGeometry]:
    """Resample normalised ``(z, y, x)`` MR to the network's pixel spacing and pad it.

    Parameters
    ----------
    normalised : numpy.ndarray
        Output of :func:`~ai_pipelines.synth_ct.preprocess.normalise_mr`.
    pixel_spacing : tuple[float, float]
        Row and column spacing of the MR (mm).

    Returns
    -------
    tuple[torch.Tensor, SliceGeometry]
        ``(z, 1, H, W)`` float32 on the CPU, H and W multiples of 8; the sizes to undo it.
    """
    rows, columns = normalised.shape[1:]
    size = (max(round(rows * pixel_spacing[0] / PIXEL_SPACING_MM), 1),
            max(round(columns * pixel_spacing[1] / PIXEL_SPACING_MM), 1))
    slices = resize_slices(torch.from_numpy(np.ascontiguousarray(normalised, dtype=np.float32))[:, None], size)
    padded, _ = pad_to_multiple(slices, SIZE_MULTIPLE)
    return padded, SliceGeometry(original=(rows, columns), resampled=size)


def translate(network: torch.nn.Module, slices: torch.Tensor, device: torch.device,
              batch: int = BATCH_SLICES) -> torch.Tensor:
    """The bare forward pass: ``(z, 1, H, W)`` prepared MR -> ``(z, 1, H, W)`` CT in [-1, 1] (CPU, float32)."""
    outputs = []
    with autocast(device):
        for start in range(0, slices.shape[0], batch):
            outputs.append(network(slices[start:start + batch].to(device)).float().cpu())
    return torch.cat(outputs)


def restore_slices(output: torch.Tensor, geometry: SliceGeometry, mask: np.ndarray) -> np.ndarray:
    """Network output -> ``(z, y, x)`` HU on the MR's grid, air outside the body mask."""
    height, width = geometry.resampled
    cropped = output[:, :, :height, :width]
    unit = resize_slices(cropped, geometry.original)[:, 0].numpy()
    hu = np.clip(unit_to_hu(unit), *HU_RANGE)
    return np.where(mask, hu, AIR_HU).astype(np.float32)


def synthesise(network: torch.nn.Module, values: np.ndarray, pixel_spacing: tuple[float, float],
               device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """All steps at once (for evaluation): ``(z, y, x)`` MR -> (HU, body mask) on the same grid."""
    normalised, mask = normalise_mr(values)
    slices, geometry = prepare_slices(normalised, pixel_spacing)
    return restore_slices(translate(network, slices, device), geometry, mask), mask
