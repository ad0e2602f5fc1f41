"""Chest CT with lung nodules drawn from LIDC-IDRI statistics, for training and evaluation.

Anatomy is defined in patient coordinates (LPS, mm) and sampled on an axial grid: body
with a fat layer and muscle, ribs, two lungs (parenchyma about -850 HU, denser towards the
back), heart, mediastinum, spine and aorta, and in each lung branching vessel trees
(tubes that narrow at each branching, so that their cross-sections look like nodules of
every size). Nodules follow the LIDC-IDRI annotation statistics in
``ai_pipelines/lung_nodules/data/lidc_stats.json``: diameter 3-30 mm and texture (solid,
part-solid, ground-glass) from the radiologists' outlines, and shape from their
sphericity, lobulation and spiculation ratings. A fifth sit on the pleura
(juxtapleural), a fifth on a vessel (juxtavascular). The image is blurred (scanner
point-spread) and gets correlated noise of 10-45 HU. Everything is deterministic for a seed.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from scipy import ndimage

from ai_pipelines.synthetic.series import AXIAL, Grid, make_series

__all__ = ["STATS_PATH", "TEXTURES", "ChestCase", "LidcStats", "NoduleSpec", "chest_case", "chest_series"]

STATS_PATH = Path(__file__).resolve().parent.parent / "lung_nodules" / "data" / "lidc_stats.json"
TEXTURES = ("solid", "part_solid", "ground_glass")
SITES = ("parenchymal", "juxtapleural", "juxtavascular")


@dataclass(frozen=True, slots=True)
class NoduleSpec:
    """One nodule: where it is, its size, and its LIDC-style description.

    Parameters
    ----------
    centre : tuple[float, float, float]
        Patient coordinates (LPS, mm).
    diameter_mm : float
        Largest in-plane extent of the nodule body (as LIDC measures it), 3-30 mm.
    texture : str
        ``"solid"``, ``"part_solid"`` or ``"ground_glass"``.
    sphericity, lobulation, spiculation : int
        LIDC ratings 1-5 (5: round, marked lobulation, marked spiculation).
    site : str
        ``"parenchymal"``, ``"juxtapleural"`` or ``"juxtavascular"``.
    """

    centre: tuple[float, float, float]
    diameter_mm: float
    texture: str
    sphericity: int
    lobulation: int
    spiculation: int
    site: str


@dataclass(frozen=True, slots=True, eq=False)
class ChestCase:
    """A synthetic chest CT volume with its nodules.

    Parameters
    ----------
    values : numpy.ndarray
        ``(z, y, x)`` float32 HU on ``grid``.
    labels : numpy.ndarray
        ``(z, y, x)`` uint8: nodule ``n`` (1-based, order of ``nodules``) where it is, else 0.
    lung : numpy.ndarray
        ``(z, y, x)`` bool lung mask (the anatomy's, before nodules and noise).
    nodules : tuple[NoduleSpec, ...]
        Empty for a nodule-free scan.
    grid : Grid
        The axial grid (spacing z, y, x in mm; origin in LPS).
    """

    values: np.ndarray
    labels: np.ndarray
    lung: np.ndarray
    nodules: tuple[NoduleSpec, ...]
    grid: Grid

    def centre_indices(self) -> np.ndarray:
        """``(N, 3)`` fractional (k, j, i) indices of the nodule centres on ``grid``."""
        if not self.nodules:
            return np.zeros((0, 3))
        points = np.array([n.centre for n in self.nodules])
        return (points - self.grid.origin) @ self.grid.axes.T / np.array(self.grid.spacing)


class LidcStats:
    """Samples nodule size, texture and shape ratings from the LIDC-IDRI statistics JSON.

    Parameters
    ----------
    path : Path, optional
        The JSON written by ``python -m ai_pipelines.lung_nodules.lidc_stats``.
    """

    def __init__(self, path: Path = STATS_PATH) -> None:
        data = json.loads(Path(path).read_text())
        self.source: str = data["source"]
        self.bins = np.asarray(data["diameter_bins_mm"], dtype=float)
        self.groups = data["groups"]
        self.shares = np.array([self.groups[t]["share"] for t in TEXTURES], dtype=float)

    def sample(self, rng: np.random.Generator, *, subsolid_boost: float = 1.0) -> tuple[float, str, int, int, int]:
        """Draw (diameter mm, texture, sphericity, lobulation, spiculation) for one nodule.

        ``subsolid_boost`` multiplies the odds of part-solid and ground-glass nodules (rare in
        LIDC: 5% and 10%), which training uses so that the network sees enough of them.
        """
        weights = self.shares * np.array([1.0, subsolid_boost, subsolid_boost])
        texture = TEXTURES[int(rng.choice(3, p=weights / weights.sum()))]
        group = self.groups[texture]
        histogram = np.asarray(group["diameter_histogram"], dtype=float)
        b = int(rng.choice(len(histogram), p=histogram / histogram.sum()))
        diameter = float(rng.uniform(self.bins[b], self.bins[b + 1]))
        ratings = []
        for name in ("sphericity", "lobulation", "spiculation"):
            counts = np.asarray(group[name], dtype=float)
            ratings.append(int(rng.choice(5, p=counts / counts.sum())) + 1)
        return (diameter, texture, *ratings)  # type: ignore[return-value]


@functools.cache
def _default_stats() -> LidcStats:
    return LidcStats()


def _ellipsoid_mask(points: np.ndarray, centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    scaled = (points - centre) / radii
    return np.einsum("...i,...i->...", scaled, scaled) <= 1.0


def _vessel_segments(rng: np.random.Generator, root: np.ndarray, direction: np.ndarray) -> list[tuple]:
    """A branching tree of (start, end, radius) tubes from a hilum outwards."""
    segments = []
    stack = [(root, direction / np.linalg.norm(direction), float(rng.uniform(4.0, 5.5)), 0)]
    while stack:
        start, d, radius, depth = stack.pop()
        length = rng.uniform(18, 34) * (0.85 ** depth)
        end = start + d * length
        segments.append((start, end, radius))
        if depth >= 5 or radius < 0.8:
            continue
        for sign in (-1.0, 1.0):
            turn = rng.normal(0, 1, 3)
            turn -= (turn @ d) * d
            turn /= np.linalg.norm(turn) + 1e-9
            angle = np.deg2rad(rng.uniform(20, 45)) * sign
            child = np.cos(angle) * d + np.sin(angle) * turn
            stack.append((end, child / np.linalg.norm(child), radius * rng.uniform(0.68, 0.8), depth + 1))
    return segments


def _paint_tube(values: np.ndarray, grid: Grid, segment: tuple, hu: float, where: np.ndarray) -> np.ndarray:
    """Set voxels within ``radius`` of the segment to ``hu`` (inside ``where``); return the tube mask."""
    start, end, radius = segment
    spacing, origin = np.array(grid.spacing)[::-1], grid.origin  # (x, y, z) spacing for an axial grid
    low = np.floor((np.minimum(start, end) - radius - origin) / spacing).astype(int)
    high = np.ceil((np.maximum(start, end) + radius - origin) / spacing).astype(int) + 1
    low, high = np.maximum(low, 0), np.minimum(high, np.array(grid.shape)[::-1])
    mask = np.zeros(values.shape, dtype=bool)
    if np.any(high <= low):
        return mask
    zs, ys, xs = (origin[a] + spacing[a] * np.arange(low[a], high[a]) for a in (2, 1, 0))
    points = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), axis=-1).transpose(2, 1, 0, 3)
    axis = end - start
    t = np.clip(((points - start) @ axis) / max(axis @ axis, 1e-9), 0, 1)
    distance = np.linalg.norm(points - (start + t[..., None] * axis), axis=-1)
    box = (slice(low[2], high[2]), slice(low[1], high[1]), slice(low[0], high[0]))
    inside = (distance <= radius) & where[box]
    values[box][inside] = hu
    mask[box] = inside
    return mask


def _nodule_mask(points: np.ndarray, spec: NoduleSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(body mask, solid-core mask) of a nodule at ``points`` (``(..., 3)`` mm)."""
    radius = spec.diameter_mm / 2
    d = points - np.array(spec.centre)
    rho = np.linalg.norm(d, axis=-1) + 1e-6
    u = d / rho[..., None]
    # sphericity 5 is round; 1 is elongated (axis ratio up to 1.6 along a random axis)
    axis = rng.normal(0, 1, 3)
    axis /= np.linalg.norm(axis)
    elongation = 1 + (5 - spec.sphericity) * 0.15
    cos = u @ axis
    shape = 1.0 / np.sqrt(cos**2 / elongation**2 + (1 - cos**2) * elongation)
    # lobulation: smooth bumps around the surface
    lobes = rng.normal(0, 1, (int(rng.integers(3, 7)), 3))
    lobes /= np.linalg.norm(lobes, axis=1, keepdims=True)
    bumps = np.exp((u @ lobes.T - 1) / 0.12).max(axis=-1)
    shape *= 1 + 0.07 * (spec.lobulation - 1) * (bumps - 0.3)
    body = rho <= radius * shape
    core = rho <= radius * shape * float(rng.uniform(0.3, 0.6))
    # spiculation: thin straight spikes from the surface outwards
    for _ in range(3 * (spec.spiculation - 1)):
        v = rng.normal(0, 1, 3)
        v /= np.linalg.norm(v)
        along = d @ v
        across = np.linalg.norm(d - along[..., None] * v, axis=-1)
        reach = radius * rng.uniform(1.3, 2.0)
        width = rng.uniform(0.4, 0.8) * (1 - np.clip(along / reach, 0, 1))
        body |= (along > 0) & (along < reach) & (across <= width)
    return body, core


def _box(grid: Grid, centre: np.ndarray, reach: float) -> tuple[slice, ...]:
    """Index box (z, y, x) of an axial grid holding a ball of ``reach`` mm around ``centre``."""
    spacing = np.array(grid.spacing)[::-1]
    low = np.floor((centre - reach - grid.origin) / spacing).astype(int)
    high = np.ceil((centre + reach - grid.origin) / spacing).astype(int) + 1
    low, high = np.maximum(low, 0), np.minimum(high, np.array(grid.shape)[::-1])
    return tuple(slice(int(low[a]), int(max(high[a], low[a]))) for a in (2, 1, 0))


def _place(rng: np.random.Generator, site: str, radius: float, distance: np.ndarray, lung: np.ndarray,
           points: np.ndarray, vessels: np.ndarray) -> np.ndarray | None:
    """Pick a centre for a nodule at ``site``; None when the grid has no room for it."""
    if site == "juxtapleural":
        candidates = lung & (np.abs(distance - 0.6 * radius) <= 1.5)
    elif site == "juxtavascular":
        candidates = lung & vessels & (distance > radius + 2)
    else:
        candidates = lung & (distance > radius + 3)
    flat = np.flatnonzero(candidates)
    if flat.size == 0:
        return None
    centre = points.reshape(-1, 3)[int(rng.choice(flat))].copy()
    if site == "juxtavascular":  # beside the vessel, touching it
        offset = rng.normal(0, 1, 3)
        centre += offset / np.linalg.norm(offset) * radius * 0.8
    return centre


def chest_case(
    seed: int,
    *,
    shape: tuple[int, int, int] = (48, 160, 216),
    spacing: tuple[float, float, float] = (1.5, 1.5, 1.5),
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0),
    nodules: int | None = None,
    nodule_free_fraction: float = 0.3,
    subsolid_boost: float = 1.0,
    noise_hu: float | None = None,
    stats: LidcStats | None = None,
) -> ChestCase:
    """Generate one chest CT volume with nodules.

    Parameters
    ----------
    seed : int
        Seeds everything (anatomy, nodules, noise).
    shape, spacing : optional
        The axial grid (z, y, x); 1.5 mm isotropic and 72 x 240 x 324 mm by default.
    centre : tuple[float, float, float], optional
        Patient point at the middle of the grid (move it to image part of the chest).
    nodules : int or None, optional
        Number of nodules; by default none with probability ``nodule_free_fraction``, else 1-4.
    nodule_free_fraction : float, optional
        Share of nodule-free scans when ``nodules`` is None.
    subsolid_boost : float, optional
        See :meth:`LidcStats.sample`.
    noise_hu : float or None, optional
        Noise standard deviation; 10-45 HU drawn by default.
    stats : LidcStats or None, optional
        The statistics to draw from (the committed JSON by default).

    Returns
    -------
    ChestCase
        Fewer nodules than asked only when the grid has no room left in the lungs.
    """
    rng = np.random.default_rng(seed)
    stats = stats or _default_stats()
    grid = Grid(shape, spacing, AXIAL, centre)
    points = grid.voxel_centres()
    x, y = points[..., 0], points[..., 1]
    body_radii = np.array([rng.uniform(140, 160), rng.uniform(100, 115), 1e4])
    values = np.full(shape, -1000.0)
    values[_ellipsoid_mask(points, np.zeros(3), body_radii)] = -100.0
    inner = _ellipsoid_mask(points, np.zeros(3), body_radii - np.array([1.0, 1.0, 0.0]) * rng.uniform(8, 16))
    values[inner] = 45.0
    lung = np.zeros(shape, dtype=bool)
    lung_x, lung_radii = rng.uniform(62, 72), np.array([rng.uniform(48, 58), rng.uniform(62, 72), 180.0])
    for side in (-1, 1):
        lung |= _ellipsoid_mask(points, np.array([side * lung_x, -5.0, 0.0]), lung_radii)
    # ribs: bright bands in the wall just outside the lungs, every 25 mm, sloping down in front
    wall = _ellipsoid_mask(points, np.zeros(3), body_radii - [4, 4, 0]) & ~_ellipsoid_mask(
        points, np.zeros(3), np.array([lung_x + lung_radii[0] + 6, lung_radii[1] + 6, 1e4]))
    phase = rng.uniform(0, 25)
    rib = wall & inner & (np.abs(((points[..., 2] - 0.3 * y + phase) % 25.0) - 12.5) < 4.0)
    values[rib] = 650.0
    heart = _ellipsoid_mask(points, np.array([15.0, -30.0, -45.0]), np.array([55.0, 45.0, 60.0]))
    lung &= ~heart & (np.abs(x) > 18)
    values[lung] = -850.0 + 35.0 * (y[lung] / 70.0)  # gravity: the back is denser
    smooth = ndimage.gaussian_filter(rng.normal(0, 1, shape), 6 / np.array(spacing))
    values[lung] += 15.0 * smooth[lung] / (smooth.std() + 1e-9)
    values[_ellipsoid_mask(points, np.array([0.0, 72.0, 0.0]), np.array([18.0, 18.0, 1e4]))] = 700.0
    values[_ellipsoid_mask(points, np.array([18.0, 35.0, 0.0]), np.array([13.0, 13.0, 1e4]))] = 45.0
    vessels = np.zeros(shape, dtype=bool)
    for side in (-1, 1):
        for _ in range(3):
            root = np.array([side * (lung_x - lung_radii[0] + 8), rng.uniform(-20, 15), rng.uniform(-30, 30)])
            direction = np.array([side * 1.0, rng.normal(0, 0.6), rng.normal(0, 0.8)])
            for segment in _vessel_segments(rng, root, direction):
                vessels |= _paint_tube(values, grid, segment, 40.0, lung)
    distance = ndimage.distance_transform_edt(lung, sampling=spacing)
    labels = np.zeros(shape, dtype=np.uint8)
    wanted = nodules if nodules is not None else (
        0 if rng.random() < nodule_free_fraction else int(rng.integers(1, 5)))
    specs: list[NoduleSpec] = []
    for _ in range(wanted):
        diameter, texture, sphericity, lobulation, spiculation = stats.sample(rng, subsolid_boost=subsolid_boost)
        site = SITES[int(rng.choice(3, p=[0.6, 0.2, 0.2]))]
        free = lung & (labels == 0) & ~ndimage.binary_dilation(labels > 0, iterations=3)
        where = _place(rng, site, diameter / 2, distance, free, points, vessels)
        if where is None:
            continue
        spec = NoduleSpec(tuple(float(v) for v in where), diameter, texture,  # type: ignore[arg-type]
                          sphericity, lobulation, spiculation, site)
        box = _box(grid, np.array(spec.centre), 2.1 * diameter / 2)
        body, core = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
        body[box], core[box] = _nodule_mask(points[box], spec, rng)
        body &= labels == 0
        if not body.any():
            continue
        solid_hu = float(rng.uniform(10, 60))
        glass_hu = float(rng.uniform(-650, -450))
        hu = {"solid": np.full(shape, solid_hu), "ground_glass": np.full(shape, glass_hu),
              "part_solid": np.where(core, solid_hu, glass_hu)}[texture]
        values[body] = np.maximum(values[body], hu[body] + rng.normal(0, 12, int(body.sum())))
        specs.append(spec)
        labels[body] = len(specs)
    # scanner point-spread, then correlated noise
    values = ndimage.gaussian_filter(values, 0.7 / np.array(spacing))
    noise = ndimage.gaussian_filter(rng.normal(0, 1, shape), 0.6)
    sigma = noise_hu if noise_hu is not None else float(rng.uniform(10, 45))
    values += sigma * noise / (noise.std() + 1e-9)
    return ChestCase(values.astype(np.float32), labels, lung, tuple(specs), grid)


def chest_series(
    seed: int,
    *,
    series_description: str = "Chest CT (synthetic nodules)",
    **kwargs: object,
) -> tuple[list[Dataset], ChestCase]:
    """A :func:`chest_case` written as a DICOM CT series (BodyPartExamined CHEST).

    Parameters
    ----------
    seed : int
        Seeds the case and the UIDs.
    series_description : str, optional
        SeriesDescription.
    **kwargs
        Passed to :func:`chest_case`.

    Returns
    -------
    tuple[list[Dataset], ChestCase]
        The instances in slice order, and the case with its truth.
    """
    case = chest_case(seed, **kwargs)  # type: ignore[arg-type]
    datasets = make_series(case.values, case.grid, modality="CT", seed=seed,
                           series_description=series_description, body_part="CHEST")
    return datasets, case
