"""The classical baseline: Laplacian-of-Gaussian blobs (skimage.feature.blob_log) inside a lung mask.

The lung mask is the air inside the body (HU < -400, not connected to the air around the
patient), closed and hole-filled per axial slice so that nodules on the pleura and vessels
count as lung. The image outside the mask is set to air, so the chest wall makes no blobs.
Each blob is scored by its scale-normalised LoG response; the score ranks candidates for
FROC, and an operating threshold on it decides a scan-level call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.feature import blob_log

from ai_pipelines.lung_nodules.model import normalise

__all__ = ["Blob", "log_blobs", "lung_mask"]


@dataclass(frozen=True, slots=True)
class Blob:
    """A LoG candidate: centre (fractional k, j, i), score (scale-normalised LoG), diameter (mm)."""

    index: tuple[float, float, float]
    score: float
    diameter_mm: float


def lung_mask(hu: np.ndarray, spacing: Sequence[float], *, closing_mm: float = 12.0) -> np.ndarray:
    """Lungs of an axial CT: enclosed air, closed (disc of ``closing_mm``) and filled per slice.

    Parameters
    ----------
    hu : numpy.ndarray
        ``(z, y, x)`` HU, axial slices.
    spacing : Sequence[float]
        Voxel size (z, y, x) in mm.
    closing_mm : float, optional
        Radius of the in-plane closing that takes juxtapleural nodules into the mask.

    Returns
    -------
    numpy.ndarray
        Boolean mask.
    """
    air = hu < -400
    components, count = ndimage.label(air)
    # the air around the patient touches the in-plane edges; lungs may run through the top and bottom slices
    border = np.unique(np.concatenate([components[:, [0, -1]].ravel(), components[:, :, [0, -1]].ravel()]))
    sizes = ndimage.sum_labels(air, components, index=np.arange(1, count + 1))
    keep = np.zeros(count + 1, dtype=bool)
    keep[1:] = sizes >= 1000.0 / float(np.prod(spacing))  # at least 1 cm3 of air
    keep[border] = False
    inside = keep[components]
    radius = max(1, int(round(closing_mm / float(spacing[1]))))
    yy, xx = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    disc = yy**2 + xx**2 <= radius**2
    mask = np.zeros_like(inside)
    for k in np.flatnonzero(inside.any(axis=(1, 2))):
        padded = np.pad(inside[k], radius)
        closed = ndimage.binary_closing(padded, structure=disc)[radius:-radius, radius:-radius]
        mask[k] = ndimage.binary_fill_holes(closed)
    return mask


def log_blobs(hu: np.ndarray, spacing: Sequence[float], *, threshold: float = 0.1,
              mask: np.ndarray | None = None) -> list[Blob]:
    """LoG blobs of 3-30 mm inside the lungs, strongest first.

    Parameters
    ----------
    hu : numpy.ndarray
        ``(z, y, x)`` HU on an isotropic grid (resample first otherwise).
    spacing : Sequence[float]
        Voxel size in mm (isotropic).
    threshold : float, optional
        blob_log's absolute threshold on the scale-normalised response (of the [0, 1] image).
    mask : numpy.ndarray or None, optional
        Lung mask; :func:`lung_mask` by default.

    Returns
    -------
    list[Blob]
        Candidates whose centre lies in the mask.
    """
    voxel = float(spacing[0])
    mask = lung_mask(hu, spacing) if mask is None else mask
    image = np.where(mask, normalise(hu), 0.0).astype(np.float32)
    # a ball of radius r peaks at sigma = r / sqrt(3): 3-30 mm diameters
    sigmas = (1.5 / np.sqrt(3) / voxel, 15.0 / np.sqrt(3) / voxel)
    found = blob_log(image, min_sigma=max(sigmas[0], 0.8), max_sigma=sigmas[1], num_sigma=7,
                     threshold=threshold, overlap=0.5, exclude_border=False)
    blobs = []
    for k, j, i, sigma in found:
        centre = (int(k), int(j), int(i))
        if not mask[centre]:
            continue
        reach = int(np.ceil(4 * sigma)) + 1
        box = tuple(slice(max(c - reach, 0), c + reach + 1) for c in centre)
        local = -sigma**2 * ndimage.gaussian_laplace(image[box], sigma)
        score = float(local[tuple(c - b.start for c, b in zip(centre, box, strict=True))])
        blobs.append(Blob((float(k), float(j), float(i)), score, float(2 * np.sqrt(3) * sigma * voxel)))
    return sorted(blobs, key=lambda b: -b.score)
