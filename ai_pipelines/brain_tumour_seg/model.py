"""The network, its working grid and the array-level segmentation shared by run(), training and evaluation.

The network is a small MONAI 3D UNet (one input channel, three sigmoid outputs: whole
tumour WT, tumour core TC, enhancing tumour ET) that works on a 2 mm isotropic grid in the
source's voxel axes. One network reads either contrast; which outputs are meaningful depends
on the contrast (:data:`REGIONS_SHOWN`): FLAIR shows the whole tumour (oedema included), T1
post-contrast shows the core and its enhancing part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.networks.nets import UNet
from scipy import ndimage

from ai_pipelines.nn.inference import predict_volume

__all__ = [
    "NETWORK_KWARGS",
    "REGION_NAMES",
    "REGIONS_SHOWN",
    "ROI_SIZE",
    "WORK_SPACING",
    "build_network",
    "normalise",
    "predict_probabilities",
    "resample",
    "to_work_grid",
]

#: Output channels, in order.
REGION_NAMES = ("WT", "TC", "ET")
#: Which output channels each contrast supports (and the loss trains on).
REGIONS_SHOWN: Mapping[str, tuple[str, ...]] = {"flair": ("WT",), "t1c": ("TC", "ET")}
#: Working grid (mm) and sliding-window size (voxels of that grid: 128 mm cubes).
WORK_SPACING = 2.0
ROI_SIZE = (64, 64, 64)
#: The default architecture (a checkpoint may override any of these).
NETWORK_KWARGS: Mapping[str, Any] = {
    "spatial_dims": 3, "in_channels": 1, "out_channels": 3,
    "channels": (16, 32, 64, 128), "strides": (2, 2, 2), "num_res_units": 1,
}


def build_network(overrides: Mapping[str, Any] | None = None) -> torch.nn.Module:
    """Make the untrained UNet, with keyword ``overrides`` from a checkpoint.

    Parameters
    ----------
    overrides : Mapping[str, Any] or None, optional
        Keyword arguments of :class:`monai.networks.nets.UNet` replacing the defaults.

    Returns
    -------
    torch.nn.Module
        The network (about 0.6 M parameters with the defaults).
    """
    kwargs = {**NETWORK_KWARGS, **dict(overrides or {})}
    for key in ("channels", "strides"):
        kwargs[key] = tuple(kwargs[key])
    return UNet(**kwargs)


def resample(array: np.ndarray, shape: Sequence[int], factors: Sequence[float], *, order: int = 1) -> np.ndarray:
    """Sample ``array`` on a grid of ``shape`` whose voxel ``w`` lies at source index ``w * factors``.

    Voxel centres 0 of both grids coincide, so a round trip keeps positions exact.

    Parameters
    ----------
    array : numpy.ndarray
        ``(z, y, x)`` values.
    shape : Sequence[int]
        Target shape.
    factors : Sequence[float]
        Source voxels per target voxel along each axis.
    order : int, optional
        Spline order (1 linear, 0 nearest).

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape`` (edge values repeated beyond the source).
    """
    axes = [np.arange(n, dtype=np.float32) * np.float32(f) for n, f in zip(shape, factors, strict=True)]
    coords = np.stack(np.meshgrid(*axes, indexing="ij"), axis=0)
    return ndimage.map_coordinates(np.asarray(array, dtype=np.float32), coords, order=order,
                                   mode="nearest").astype(np.float32)


def to_work_grid(array: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, tuple[float, ...]]:
    """Resample a ``(z, y, x)`` volume of ``spacing`` mm onto the 2 mm working grid.

    Parameters
    ----------
    array : numpy.ndarray
        Source intensities.
    spacing : Sequence[float]
        Source voxel size (z, y, x) in mm.

    Returns
    -------
    tuple[numpy.ndarray, tuple[float, ...]]
        The resampled array and the factors (source voxels per working voxel) that map it back.
    """
    factors = tuple(WORK_SPACING / float(s) for s in spacing)
    smoothing = [0.4 * (f - 1) if f > 1 else 0.0 for f in factors]  # anti-alias when shrinking
    source = ndimage.gaussian_filter(np.asarray(array, dtype=np.float32), smoothing) if any(smoothing) else array
    shape = [int(np.floor((n - 1) / f)) + 1 for n, f in zip(array.shape, factors, strict=True)]
    return resample(source, shape, factors), factors


def normalise(array: np.ndarray) -> np.ndarray:
    """Z-score over the head: voxels above 15 % of the 99th percentile (noise and air left out).

    Parameters
    ----------
    array : numpy.ndarray
        MR intensities in any unit.

    Returns
    -------
    numpy.ndarray
        float32, mean 0 and standard deviation 1 over the head.
    """
    array = np.asarray(array, dtype=np.float32)
    high = float(np.percentile(array, 99))
    head = array > 0.15 * high
    if high <= 0 or head.sum() < 10:
        return np.zeros_like(array)
    values = array[head]
    return ((array - values.mean()) / max(float(values.std()), 1e-6)).astype(np.float32)


def predict_probabilities(
    network: torch.nn.Module,
    array: np.ndarray,
    spacing: Sequence[float],
    *,
    device: torch.device,
    overlap: float = 0.25,
) -> np.ndarray:
    """WT, TC, ET probabilities of a ``(z, y, x)`` MR volume, on its own grid.

    Parameters
    ----------
    network : torch.nn.Module
        The trained network, in eval mode on ``device``.
    array : numpy.ndarray
        Source intensities.
    spacing : Sequence[float]
        Source voxel size (z, y, x) in mm.
    device : torch.device
        Where the windows run.
    overlap : float, optional
        Sliding-window overlap.

    Returns
    -------
    numpy.ndarray
        ``(3, z, y, x)`` float32 in [0, 1].
    """
    work, factors = to_work_grid(array, spacing)
    logits = predict_volume(network, normalise(work)[None], roi_size=ROI_SIZE, device=device, overlap=overlap)
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    back = [1.0 / f for f in factors]
    return np.stack([resample(channel, array.shape, back) for channel in probabilities])
