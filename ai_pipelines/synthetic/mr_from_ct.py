"""MR-like images derived from real CT, paired with that CT: training and test data for synth_ct.

No paired MR/CT of one patient can be had here, so the MR side is *derived from the CT*:
Hounsfield units are mapped through a tissue lookup (air, fat, fluid/CSF, white and grey
matter, soft tissue, marrow, cortical bone) to a T1-like or T2-like signal, with partial-volume
smoothing, a smooth multiplicative bias field, Rician noise and an arbitrary scanner scale.
The CT, clipped to [-1024, 3000] HU and set to air outside the body, is the target.
Every figure measured on these pairs must say that the MR was derived from CT: a model that
does well here has learnt to invert our lookup, not real MR physics.

Real CT sources (:mod:`ai_pipelines.synthetic.anatomy`) and the split, kept disjoint:

- head CT (108 slices, 1.5 mm): slices 44-63 (a contiguous slab through the ventricles and
  skull) are held out for evaluation and tests; 4 slices either side are used by neither;
- abdomen CT (20 slices, 2 mm): slices 14-19 are held out; 12-13 are used by neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from scipy import ndimage

from ai_pipelines.synthetic import anatomy
from ai_pipelines.synthetic.series import AXIAL, Grid, make_series

__all__ = [
    "AIR_HU",
    "CONTRASTS",
    "HU_RANGE",
    "T1",
    "T2",
    "Contrast",
    "CtPiece",
    "MrCtCase",
    "body_mask_ct",
    "ct_target",
    "derived_mr_series",
    "heldout_ct",
    "mr_from_ct",
    "training_ct",
]

#: HU range of the target, as SynthRAD uses it.
HU_RANGE = (-1024.0, 3000.0)
AIR_HU = -1024.0

_HEAD_HELDOUT = (44, 64)
_HEAD_GAP = 4
_ABDOMEN_HELDOUT = (14, 20)
_ABDOMEN_GAP = 2


@dataclass(frozen=True, slots=True)
class Contrast:
    """An MR weighting as a piecewise-linear lookup from (smoothed) HU to relative signal.

    Parameters
    ----------
    name : str
        ``"T1"`` or ``"T2"``.
    knots_hu : tuple[float, ...]
        Increasing HU values.
    signal : tuple[float, ...]
        Relative signal (0 = none, 1 = brightest tissue) at each knot.

    Raises
    ------
    ValueError
        If the knots are not increasing or the lengths differ.
    """

    name: str
    knots_hu: tuple[float, ...]
    signal: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.knots_hu) != len(self.signal) or len(self.knots_hu) < 2:
            raise ValueError(f"Contrast {self.name}: knots and signal must have the same length >= 2")
        if np.any(np.diff(self.knots_hu) <= 0):
            raise ValueError(f"Contrast {self.name}: knots_hu must increase")


# Knots: air | lung | fat | fat/water edge | CSF | white matter | grey matter / muscle / liver |
# enhanced vessels | trabecular bone (fatty marrow) | cortical bone. In T1 fat is bright, CSF
# dark, white matter brighter than grey; in T2 CSF is brightest and grey brighter than white.
# Cortical bone gives no signal in either (as in real MR, bone and air look alike).
_KNOTS = (-1024, -500, -200, -100, -60, -20, 2, 12, 24, 30, 40, 60, 100, 200, 400, 800, 1500, 3000)
T1 = Contrast("T1", _KNOTS, (0.0, 0.0, 0.55, 1.0, 0.95, 0.45, 0.12, 0.2, 0.70, 0.66, 0.50, 0.50, 0.55,
                             0.55, 0.40, 0.10, 0.03, 0.02))
T2 = Contrast("T2", _KNOTS, (0.0, 0.0, 0.50, 0.85, 0.80, 0.55, 1.0, 0.9, 0.45, 0.47, 0.58, 0.40, 0.45,
                             0.45, 0.35, 0.08, 0.03, 0.02))
CONTRASTS = {"T1": T1, "T2": T2}


@dataclass(frozen=True, slots=True, eq=False)
class CtPiece:
    """A stack of real CT slices in HU with its spacing and a one-line source.

    Parameters
    ----------
    values : numpy.ndarray
        ``(z, y, x)`` float32 HU.
    spacing : tuple[float, float, float]
        Voxel size (z, y, x) in mm.
    source : str
        What the slices are, e.g. ``"real head CT slices 44-63 (held out)"``.
    """

    values: np.ndarray
    spacing: tuple[float, float, float]
    source: str


def body_mask_ct(hu: np.ndarray) -> np.ndarray:
    """The patient's body in a CT, per slice: no table or head holder, holes filled.

    Parameters
    ----------
    hu : numpy.ndarray
        ``(z, y, x)`` or ``(y, x)`` HU.

    Returns
    -------
    numpy.ndarray
        Boolean mask of the same shape.
    """
    if hu.ndim == 2:
        return body_mask_ct(hu[None])[0]
    mask = np.zeros(hu.shape, dtype=bool)
    structure = ndimage.generate_binary_structure(2, 1)
    for k, plane in enumerate(hu):
        # opening removes thin table and head-holder shells; small parts (arms stay) are dropped
        solid = ndimage.binary_opening(plane > -400, structure, iterations=2)
        labels, count = ndimage.label(solid)
        if count == 0:
            continue
        sizes = ndimage.sum_labels(solid, labels, index=np.arange(1, count + 1))
        keep = np.flatnonzero(sizes >= max(0.02 * sizes.max(), 50)) + 1
        mask[k] = ndimage.binary_fill_holes(np.isin(labels, keep))
    return mask


def ct_target(hu: np.ndarray, body: np.ndarray | None = None) -> np.ndarray:
    """The CT the model should produce: clipped to :data:`HU_RANGE`, air outside the body."""
    body = body_mask_ct(hu) if body is None else body
    return np.where(body, np.clip(hu, *HU_RANGE), AIR_HU).astype(np.float32)


def _bias_field(shape: tuple[int, ...], rng: np.random.Generator, strength: float) -> np.ndarray:
    axes = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    log_field = np.zeros(shape)
    for axis, coords in enumerate(axes):
        # the slice axis of a 3D stack varies less than the in-plane axes
        scale = strength * (0.3 if len(shape) == 3 and axis == 0 else 1.0)
        log_field += scale * (rng.normal() * coords + 0.5 * rng.normal() * coords**2)
    if len(shape) >= 2:
        log_field += 0.5 * strength * rng.normal() * axes[-1] * axes[-2]
    return np.exp(log_field)


def mr_from_ct(
    hu: np.ndarray,
    spacing: tuple[float, ...],
    *,
    rng: np.random.Generator,
    contrast: Contrast = T1,
    jitter: float = 0.1,
    noise: tuple[float, float] = (0.01, 0.04),
    bias: float = 0.15,
    body: np.ndarray | None = None,
) -> np.ndarray:
    """An MR-like image of the anatomy in a CT (derived from CT, not acquired).

    Parameters
    ----------
    hu : numpy.ndarray
        ``(y, x)`` or ``(z, y, x)`` HU.
    spacing : tuple[float, ...]
        Voxel size per axis (mm), as many as ``hu.ndim``.
    rng : numpy.random.Generator
        Draws the contrast jitter, bias field, noise and scale.
    contrast : Contrast, optional
        :data:`T1` or :data:`T2`.
    jitter : float, optional
        Standard deviation of the log-normal change of each tissue's signal (0: exact lookup).
    noise : tuple[float, float], optional
        Range of the Rician noise sigma, as a fraction of the brightest tissue signal.
    bias : float, optional
        Strength of the smooth multiplicative bias field (0: none).
    body : numpy.ndarray or None, optional
        Body mask (outside it there is no signal); :func:`body_mask_ct` by default.

    Returns
    -------
    numpy.ndarray
        float32 magnitude image of the shape of ``hu``, in arbitrary scanner units (scaled by a
        random factor between 200 and 4000, as real MR has no absolute scale).

    Raises
    ------
    ValueError
        If ``spacing`` does not match ``hu.ndim``.
    """
    if len(spacing) != hu.ndim:
        raise ValueError(f"spacing {spacing} has {len(spacing)} values for a {hu.ndim}D image")
    body = body_mask_ct(hu) if body is None else body
    sigma_mm = 1.0  # tissue lookup on smoothed HU: CT noise would otherwise speckle grey/white matter
    smoothed = ndimage.gaussian_filter(hu.astype(np.float32), [sigma_mm / s for s in spacing])
    levels = np.array(contrast.signal) * np.exp(rng.normal(0.0, jitter, len(contrast.signal)))
    signal = np.interp(smoothed, contrast.knots_hu, levels) ** rng.uniform(0.85, 1.15)
    signal = np.where(body, signal, 0.0)
    # partial volume: the MR voxel integrates a little more than the CT voxel
    signal = ndimage.gaussian_filter(signal, [0.6 / s for s in spacing])
    if bias > 0:
        signal = signal * _bias_field(hu.shape, rng, bias)
    sigma = rng.uniform(*noise) * float(np.max(levels))
    real = signal + rng.normal(0.0, sigma, hu.shape)
    imaginary = rng.normal(0.0, sigma, hu.shape)
    magnitude = np.sqrt(real**2 + imaginary**2)  # Rician: magnitude of complex Gaussian noise
    return (magnitude * rng.uniform(200.0, 4000.0)).astype(np.float32)


def _cut(volume: anatomy.RealVolume, keep: list[int], what: str) -> CtPiece:
    return CtPiece(values=volume.values[keep], spacing=volume.spacing,
                   source=f"{volume.source}, slices {_ranges(keep)} ({what})")


def _ranges(indices: list[int]) -> str:
    parts, start = [], indices[0]
    for a, b in zip(indices, [*indices[1:], None], strict=True):
        if b != a + 1:
            parts.append(f"{start}-{a}" if a != start else f"{a}")
            start = b if b is not None else start
    return ", ".join(parts)


def training_ct() -> list[CtPiece]:
    """The real CT slices training may use: head CT and abdomen CT minus the held-out slabs and gaps.

    Raises
    ------
    AnatomyUnavailable
        If a source is not installed.
    """
    pieces = []
    for volume, (start, stop), gap in ((anatomy.head_ct(), _HEAD_HELDOUT, _HEAD_GAP),
                                       (anatomy.abdomen_ct(), _ABDOMEN_HELDOUT, _ABDOMEN_GAP)):
        before = list(range(0, max(start - gap, 0)))
        after = list(range(min(stop + gap, volume.values.shape[0]), volume.values.shape[0]))
        for keep in (before, after):
            if keep:
                pieces.append(_cut(volume, keep, "training"))
    return pieces


def heldout_ct() -> list[CtPiece]:
    """The held-out real CT slabs (never trained on): head slices 44-63, abdomen slices 14-19.

    Raises
    ------
    AnatomyUnavailable
        If a source is not installed.
    """
    return [_cut(volume, list(range(*span)), "held out")
            for volume, span in ((anatomy.head_ct(), _HEAD_HELDOUT), (anatomy.abdomen_ct(), _ABDOMEN_HELDOUT))]


@dataclass(frozen=True, slots=True, eq=False)
class MrCtCase:
    """An MR-like DICOM series derived from held-out real CT, and that CT on the same grid.

    Parameters
    ----------
    datasets : tuple[Dataset, ...]
        The MR series (MR Image Storage), in slice order.
    ct : numpy.ndarray
        ``(z, y, x)`` target HU on the series' grid (:func:`ct_target`).
    body : numpy.ndarray
        Body mask of the CT on that grid.
    source : str
        What the CT was.
    """

    datasets: tuple[Dataset, ...]
    ct: np.ndarray
    body: np.ndarray
    source: str


def derived_mr_series(
    *, first: int = 4, count: int = 6, step: int = 2, contrast: Contrast = T1, seed: int = 0,
    series_description: str = "T1 SE AX",
) -> MrCtCase:
    """A small axial MR series derived from the held-out head CT slab, for tests and demos.

    Parameters
    ----------
    first, count : int, optional
        Slices ``first .. first + count - 1`` of the held-out head slab (0-19).
    step : int, optional
        In-plane block size: 2 gives 128 x 128 pixels of 1.91 mm.
    contrast : Contrast, optional
        :data:`T1` or :data:`T2`.
    seed : int, optional
        Seeds the MR's noise, bias and scale, and the UIDs.
    series_description : str, optional
        SeriesDescription of the MR.

    Returns
    -------
    MrCtCase
        The series (BodyPartExamined HEAD) and the CT truth on its grid.

    Raises
    ------
    ValueError
        If the slices fall outside the held-out slab.
    AnatomyUnavailable
        If the head CT is not installed.
    """
    head = heldout_ct()[0]
    if not (0 <= first and first + count <= head.values.shape[0] and count >= 1 and step >= 1):
        raise ValueError(f"slices {first}-{first + count - 1} (step {step}) are outside the held-out slab")
    hu = head.values[first:first + count]
    body = body_mask_ct(hu)
    mr = mr_from_ct(hu, head.spacing, rng=np.random.default_rng(seed), contrast=contrast, body=body)
    rows, columns = (n // step * step for n in hu.shape[1:])

    def blocks(a: np.ndarray) -> np.ndarray:
        a = a[:, :rows, :columns].reshape(count, rows // step, step, columns // step, step)
        return a.mean(axis=(2, 4))

    mr = blocks(mr)
    mr = mr * (2000.0 / float(np.percentile(mr, 99.9)))  # an MR scanner's 12-bit range
    ct = blocks(ct_target(hu, body))
    grid = Grid((count, rows // step, columns // step),
                (head.spacing[0], head.spacing[1] * step, head.spacing[2] * step), AXIAL)
    datasets = make_series(mr, grid, modality="MR", seed=seed, series_description=series_description,
                           body_part="HEAD", patient_name="SYNTHETIC^DERIVEDMR", patient_id="SYN-MRCT")
    return MrCtCase(datasets=tuple(datasets), ct=ct.astype(np.float32), body=blocks(body.astype(np.float32)) > 0.5,
                    source=f"{anatomy.head_ct().source}, slices {_HEAD_HELDOUT[0] + first}-"
                           f"{_HEAD_HELDOUT[0] + first + count - 1} (held out); MR-like image derived from it")
