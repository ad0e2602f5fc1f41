"""MR input preparation for synth_ct: body mask, robust intensity normalisation, in-plane resampling.

A real MR series has no absolute intensity scale (it depends on the scanner, coil, gain and
sequence), so the network never sees raw values. :func:`normalise_mr`:

1. finds the body with :func:`mr_body_mask`: voxels above 0.3 x Otsu's threshold of the
   whole series (background is noise, the body is signal), per slice opened twice to drop
   specks, parts smaller than 2% of the largest dropped, holes filled (dark bone and air
   cavities inside the body are body);
2. divides by the 99th percentile of the values inside that mask and clips to [0, 1.5].

The same function prepares every training slice, so training and run time agree. Slices are
then resampled in-plane to :data:`~ai_pipelines.synth_ct.model.PIXEL_SPACING_MM` (bilinear,
antialiased when shrinking) and zero-padded to a multiple of 8; outputs are cropped and
resampled back to the MR's exact grid.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.filters import threshold_otsu

__all__ = ["CLIP", "PERCENTILE", "mr_body_mask", "normalise_mr", "pad_to_multiple", "resize_slices"]

#: Percentile inside the body mask that maps to 1.0.
PERCENTILE = 99.0
#: Normalised values are clipped to [0, CLIP].
CLIP = 1.5
_MASK_FRACTION = 0.3


def mr_body_mask(values: np.ndarray) -> np.ndarray:
    """The body in an MR volume (see the module docstring).

    Parameters
    ----------
    values : numpy.ndarray
        ``(z, y, x)`` or ``(y, x)`` MR magnitude, any scale.

    Returns
    -------
    numpy.ndarray
        Boolean mask of the same shape (empty for a blank image).
    """
    if values.ndim == 2:
        return mr_body_mask(values[None])[0]
    finite = np.nan_to_num(values.astype(np.float32))
    if float(finite.max()) <= float(finite.min()):
        return np.zeros(values.shape, dtype=bool)
    above = finite > _MASK_FRACTION * float(threshold_otsu(finite))
    mask = np.zeros(values.shape, dtype=bool)
    structure = ndimage.generate_binary_structure(2, 1)
    for k, plane in enumerate(above):
        solid = ndimage.binary_opening(plane, structure, iterations=2)
        labels, count = ndimage.label(solid)
        if count == 0:
            continue
        sizes = ndimage.sum_labels(solid, labels, index=np.arange(1, count + 1))
        keep = np.flatnonzero(sizes >= max(0.02 * sizes.max(), 20)) + 1
        mask[k] = ndimage.binary_fill_holes(ndimage.binary_closing(np.isin(labels, keep), structure, 2))
    return mask


def normalise_mr(values: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scale MR to the network's range by a robust percentile inside the body.

    Parameters
    ----------
    values : numpy.ndarray
        ``(z, y, x)`` or ``(y, x)`` MR magnitude.
    mask : numpy.ndarray or None, optional
        Body mask; :func:`mr_body_mask` by default.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        float32 values in [0, 1.5] (the 99th percentile in the body is 1) and the body mask.

    Raises
    ------
    ValueError
        If the body mask is empty or the body has no signal.
    """
    mask = mr_body_mask(values) if mask is None else mask
    if not mask.any():
        raise ValueError("no body found: the image is blank or all noise")
    scale = float(np.percentile(values[mask], PERCENTILE))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"the body's {PERCENTILE:g}th percentile is {scale}; expected a positive signal")
    return np.clip(values / scale, 0.0, CLIP).astype(np.float32), mask


def resize_slices(slices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear in-plane resize of ``(N, C, H, W)`` (antialiased when shrinking)."""
    if tuple(slices.shape[-2:]) == tuple(size):
        return slices
    shrink = size[0] < slices.shape[-2] or size[1] < slices.shape[-1]
    return F.interpolate(slices, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def pad_to_multiple(slices: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad ``(N, C, H, W)`` at the bottom and right to a multiple; return it and (H, W)."""
    height, width = slices.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    return F.pad(slices, (0, pad_w, 0, pad_h)), (height, width)
