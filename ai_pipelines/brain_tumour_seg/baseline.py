"""The classical baseline (intensity thresholding + morphology) and the metrics (Dice, HD95).

The baseline works like the network on the 2 mm working grid, z-scored over the head:

- FLAIR, whole tumour: voxels above ``FLAIR_Z`` standard deviations, opened with a small ball,
  the largest connected component, holes filled;
- T1c, enhancing tumour: voxels above ``T1C_Z``, the largest connected component (vessels are
  smaller ones); tumour core: that rim closed and its holes filled (the necrosis it encloses).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ai_pipelines.brain_tumour_seg import model

__all__ = ["FLAIR_Z", "T1C_Z", "dice", "hd95", "segment"]

#: Thresholds in standard deviations above the head mean (chosen on training seeds, never on evaluation ones).
FLAIR_Z = 2.0
T1C_Z = 2.5


def _ball(radius: int) -> np.ndarray:
    z, y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1, -radius:radius + 1]
    return (z * z + y * y + x * x) <= radius * radius


def _largest(mask: np.ndarray) -> np.ndarray:
    labelled, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == int(np.argmax(sizes))


def segment(array: np.ndarray, spacing: Sequence[float], contrast: str) -> dict[str, np.ndarray]:
    """Threshold + morphology masks of the regions ``contrast`` shows, on the grid of ``array``.

    Parameters
    ----------
    array : numpy.ndarray
        ``(z, y, x)`` MR intensities.
    spacing : Sequence[float]
        Voxel size (z, y, x) in mm.
    contrast : str
        ``"flair"`` (-> ``WT``) or ``"t1c"`` (-> ``TC``, ``ET``).

    Returns
    -------
    dict[str, numpy.ndarray]
        Region name -> boolean mask.
    """
    work, factors = model.to_work_grid(array, spacing)
    z = model.normalise(work)
    masks: dict[str, np.ndarray] = {}
    if contrast == "flair":
        bright = ndimage.binary_opening(z > FLAIR_Z, structure=_ball(1))
        masks["WT"] = ndimage.binary_fill_holes(_largest(bright))
    else:
        rim = _largest(z > T1C_Z)  # no opening: it would erase a thin rim; vessels are smaller components
        core = ndimage.binary_fill_holes(ndimage.binary_closing(rim, structure=_ball(2)))
        masks["TC"], masks["ET"] = core | rim, rim
    back = [1.0 / f for f in factors]
    return {name: model.resample(mask.astype(np.float32), array.shape, back) > 0.5 for name, mask in masks.items()}


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap; 1.0 when both are empty (nothing to find, nothing found)."""
    total = int(prediction.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * float(np.logical_and(prediction, truth).sum()) / total


def _surface_distances(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    surface_a = a & ~ndimage.binary_erosion(a)
    surface_b = b & ~ndimage.binary_erosion(b)
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)
    return to_b[surface_a]


def hd95(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile symmetric Hausdorff distance (mm) between the surfaces; NaN if either is empty.

    As MONAI's ``compute_hausdorff_distance(percentile=95)``: the larger of the two directed
    95th percentiles.
    """
    if not prediction.any() or not truth.any():
        return float("nan")
    forward = np.percentile(_surface_distances(prediction, truth, spacing), 95)
    backward = np.percentile(_surface_distances(truth, prediction, spacing), 95)
    return float(max(forward, backward))
