"""Phantoms with ground truth: a chest CT with lung nodules, a brain MR with a tumour.

Both are built on :mod:`ai_pipelines.synthetic.series`: tissue is defined in
patient coordinates, sampled on the acquisition grid, and written as a DICOM
series; the labels come on the same grid. They are simple (ellipsoids, flat
tissue values, Gaussian or Rician noise, a smooth bias field) and seeded, and
meant for tests and smoke runs; training data with realistic size and density
statistics is the pipelines' business.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from ai_pipelines.synthetic.series import (
    AXIAL,
    Grid,
    chest_ct_values,
    ellipsoid,
    head_mr_values,
    make_series,
)

__all__ = ["BRAIN_LABELS", "Nodule", "Phantom", "brain_mr_with_tumour", "chest_ct_with_nodules"]

#: Label values of :func:`brain_mr_with_tumour`, as in BraTS.
BRAIN_LABELS = {1: "necrotic core", 2: "oedema", 3: "enhancing tumour"}

_LUNGS = ((-70.0, -5.0, 0.0), (70.0, -5.0, 0.0))
_LUNG_RADII = (55.0, 70.0, 180.0)


@dataclass(frozen=True, slots=True)
class Nodule:
    """A spherical lung nodule.

    Parameters
    ----------
    centre : tuple[float, float, float]
        Patient coordinates (LPS, mm).
    diameter_mm : float
        Diameter in mm.
    solid : bool
        Solid (soft-tissue density) or part-solid (ground-glass rim around a solid core).
    """

    centre: tuple[float, float, float]
    diameter_mm: float
    solid: bool


@dataclass(frozen=True, slots=True, eq=False)
class Phantom:
    """A synthetic series and its ground truth on the same grid.

    Parameters
    ----------
    datasets : tuple[Dataset, ...]
        The series, in slice order.
    labels : numpy.ndarray
        ``(z, y, x)`` uint8 labels on the series' grid (0 is background), slice order.
    nodules : tuple[Nodule, ...]
        The nodules of a chest phantom (label ``n`` is nodule ``n``); empty for the brain.
    """

    datasets: tuple[Dataset, ...]
    labels: np.ndarray
    nodules: tuple[Nodule, ...] = ()


def _inside_lung(rng: np.random.Generator, margin: float) -> tuple[float, float, float]:
    lung = np.array(_LUNGS[int(rng.integers(2))])
    radii = np.array(_LUNG_RADII) - margin
    radii[2] = min(radii[2], 25.0)  # keep nodules near the middle slices of a short stack
    while True:
        offset = rng.uniform(-1, 1, 3)
        if offset @ offset <= 1:
            x, y, z = lung + offset * radii
            return (float(x), float(y), float(z))


def chest_ct_with_nodules(
    *,
    seed: int = 0,
    count: int = 3,
    shape: tuple[int, int, int] = (32, 96, 96),
    spacing: tuple[float, float, float] = (2.0, 3.5, 3.5),
    noise_hu: float = 15.0,
) -> Phantom:
    """A chest CT with ``count`` nodules (4-20 mm; solid or part-solid) inside the lungs.

    Parameters
    ----------
    seed : int, optional
        Seeds nodule placement, size, type, noise and UIDs.
    count : int, optional
        Number of nodules (0 for a nodule-free scan).
    shape, spacing : optional
        The axial acquisition grid.
    noise_hu : float, optional
        Standard deviation of Gaussian noise in HU.

    Returns
    -------
    Phantom
        Labels 1..count mark the nodules (their full extent, ground glass included).
    """
    rng = np.random.default_rng(seed)
    nodules = []
    for _ in range(count):
        diameter = float(np.clip(rng.lognormal(np.log(8.0), 0.45), 4.0, 20.0))
        nodules.append(Nodule(_inside_lung(rng, diameter / 2 + 5), diameter,
                              bool(rng.random() < 0.7)))
    grid = Grid(shape, spacing, AXIAL)
    points = grid.voxel_centres()
    values = chest_ct_values(points)
    labels = np.zeros(shape, dtype=np.uint8)
    for number, nodule in enumerate(nodules, start=1):
        radius = nodule.diameter_mm / 2
        inside = ellipsoid(points, nodule.centre, (radius,) * 3)
        if nodule.solid:
            values[inside] = 30.0
        else:
            values[inside] = -600.0
            values[ellipsoid(points, nodule.centre, (radius / 2,) * 3)] = 20.0
        labels[inside] = number
    values += rng.normal(0.0, noise_hu, size=values.shape)
    datasets = make_series(values, grid, modality="CT", seed=seed,
                           series_description="Chest CT (synthetic nodules)", body_part="CHEST")
    return Phantom(tuple(datasets), labels, tuple(nodules))


def brain_mr_with_tumour(
    *,
    seed: int = 0,
    shape: tuple[int, int, int] = (32, 80, 80),
    spacing: tuple[float, float, float] = (4.0, 2.5, 2.5),
    noise: float = 25.0,
) -> Phantom:
    """A T1 post-contrast-like brain MR with a tumour: necrotic core, enhancing rim, oedema.

    Parameters
    ----------
    seed : int, optional
        Seeds tumour placement and size, bias field, noise and UIDs.
    shape, spacing : optional
        The axial acquisition grid.
    noise : float, optional
        Standard deviation of each complex channel (the magnitude is Rician).

    Returns
    -------
    Phantom
        Labels as in :data:`BRAIN_LABELS`.
    """
    rng = np.random.default_rng(seed)
    side = float(rng.choice([-1.0, 1.0]))
    centre = (side * rng.uniform(15, 30), rng.uniform(-30, 30), rng.uniform(-10, 20))
    radius = rng.uniform(12, 22)
    grid = Grid(shape, spacing, AXIAL)
    points = grid.voxel_centres()
    values = head_mr_values(points)
    brain = ellipsoid(points, (0, 0, 0), (62, 82, 67))
    stretch = rng.uniform(0.8, 1.2, 3)
    oedema = ellipsoid(points, centre, radius * 1.6 * stretch) & brain
    enhancing = ellipsoid(points, centre, radius * stretch) & brain
    core = ellipsoid(points, centre, radius * 0.6 * stretch) & brain
    labels = np.zeros(shape, dtype=np.uint8)
    labels[oedema], labels[enhancing], labels[core] = 2, 3, 1
    values[oedema] = 650.0
    values[enhancing] = 1150.0
    values[core] = 300.0
    gradient = rng.normal(0, 0.0015, 3)
    values *= 1.0 + (points @ gradient)  # smooth multiplicative bias field
    real = values + rng.normal(0.0, noise, values.shape)
    imaginary = rng.normal(0.0, noise, values.shape)
    magnitude = np.hypot(real, imaginary)
    datasets = make_series(magnitude, grid, modality="MR", seed=seed,
                           series_description="T1 post Gd (synthetic tumour)", body_part="BRAIN")
    return Phantom(tuple(datasets), labels)
