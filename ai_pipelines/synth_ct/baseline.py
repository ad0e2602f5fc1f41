"""The classical baseline: bulk-density assignment, the traditional MR-only radiotherapy method.

The MR is normalised and its body found exactly as for the network
(:mod:`ai_pipelines.synth_ct.preprocess`); then each voxel gets a fixed HU: air (-1024) outside
the body, bone (700 HU) where the body is dark (normalised signal below 0.2: cortical bone and,
unavoidably, air cavities and fluid that are dark too), soft tissue (20 HU) elsewhere. The
threshold (0.06-0.4 tried) and the bone value (400, 700, 1000 HU tried) were chosen for the lowest
MAE on derived-MR training slices (never the held-out ones).
"""

from __future__ import annotations

import numpy as np

from ai_pipelines.synth_ct.preprocess import normalise_mr
from ai_pipelines.synthetic.mr_from_ct import AIR_HU

__all__ = ["BONE_HU", "BONE_THRESHOLD", "SOFT_TISSUE_HU", "bulk_density"]

SOFT_TISSUE_HU = 20.0
BONE_HU = 700.0
BONE_THRESHOLD = 0.2


def bulk_density(values: np.ndarray, *, threshold: float = BONE_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """Threshold an MR into air, soft tissue and bone and assign each a fixed HU.

    Parameters
    ----------
    values : numpy.ndarray
        ``(z, y, x)`` MR magnitude, any scale.
    threshold : float, optional
        Normalised signal below which body voxels count as bone.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        float32 HU on the same grid and the body mask.

    Raises
    ------
    ValueError
        If no body is found.
    """
    normalised, body = normalise_mr(values)
    tissue = np.where(normalised < threshold, BONE_HU, SOFT_TISSUE_HU)
    return np.where(body, tissue, AIR_HU).astype(np.float32), body
