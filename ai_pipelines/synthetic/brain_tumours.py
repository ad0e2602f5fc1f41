"""Brain MR cases with glioma-like tumours on real anatomy: FLAIR- and T1c-like images + BraTS labels.

Each case starts from a real T1 brain (:func:`~ai_pipelines.synthetic.anatomy.mni_t1`, the
skull-stripped MNI ICBM152 template, or :func:`~ai_pipelines.synthetic.anatomy.colin27_t1`,
colin27 with scalp and skull), warped by a random affine (rotation, scaling, shift) and a
smooth elastic field so that no two cases share a brain. Tissue contrast is derived from the
T1 intensity (CSF -> grey -> white matter), and a tumour is grown in the white matter:

- an irregular tumour core (a sphere whose radius is perturbed by smooth noise), split into a
  necrotic centre (label 1) and an enhancing rim (label 3), some cases without necrosis;
- surrounding oedema (label 2), also irregular, confined to brain tissue (not CSF);
- about one case in ten has no tumour at all (labels all 0).

Two contrasts of the same case are made: ``"t1c"`` (T1 post-contrast-like: enhancing rim
bright, necrosis dark, oedema slightly hypointense, and a few enhancing vessels as
distractors) and ``"flair"`` (FLAIR-like: CSF dark, grey brighter than white, oedema and tumour
bright, necrosis variable). Both get partial-volume blur, a smooth multiplicative bias field
and Rician noise. Labels follow BraTS: 1 necrotic core, 2 oedema, 3 enhancing tumour; the
regions evaluated are WT = {1, 2, 3}, TC = {1, 3}, ET = {3}.

Everything is deterministic for a seed. :func:`case_series` writes one contrast of a case as
an axial DICOM MR series.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from scipy import ndimage

from ai_pipelines.synthetic import anatomy
from ai_pipelines.synthetic.series import AXIAL, Grid, make_series

__all__ = [
    "CONTRASTS",
    "LABELS",
    "SERIES_DESCRIPTIONS",
    "TEMPLATES",
    "BrainTumourCase",
    "case_series",
    "make_case",
    "regions",
]

#: Contrasts a case comes in.
CONTRASTS = ("flair", "t1c")
#: BraTS label values.
LABELS = {1: "necrotic core", 2: "oedema", 3: "enhancing tumour"}
#: Real anatomy the cases are built on.
TEMPLATES = ("mni", "colin27")


@dataclass(frozen=True, slots=True, eq=False)
class BrainTumourCase:
    """One synthetic case: the same brain and tumour in each contrast, with its labels.

    Parameters
    ----------
    images : Mapping[str, numpy.ndarray]
        ``"flair"`` and ``"t1c"`` -> ``(z, y, x)`` float32, arbitrary MR units (white matter
        a few hundred), z feet -> head, y anterior -> posterior, x right -> left.
    labels : numpy.ndarray
        ``(z, y, x)`` uint8, BraTS values (see :data:`LABELS`).
    spacing : tuple[float, float, float]
        Voxel size (z, y, x) in mm.
    template : str
        Which anatomy it was built on (one of :data:`TEMPLATES`).
    source : str
        Where that anatomy came from.
    """

    images: Mapping[str, np.ndarray]
    labels: np.ndarray
    spacing: tuple[float, float, float]
    template: str
    source: str


def regions(labels: np.ndarray) -> np.ndarray:
    """BraTS labels -> the three nested regions WT, TC, ET as a ``(3, z, y, x)`` bool array.

    Parameters
    ----------
    labels : numpy.ndarray
        Label values 0-3 (see :data:`LABELS`).

    Returns
    -------
    numpy.ndarray
        Whole tumour (1, 2, 3), tumour core (1, 3), enhancing tumour (3).
    """
    return np.stack([labels > 0, (labels == 1) | (labels == 3), labels == 3])


@dataclass(frozen=True, slots=True, eq=False)
class _Template:
    t1: np.ndarray  # (z, y, x) on a 1 mm grid, float32
    csf: float  # T1 level of CSF (5th percentile of the head)
    wm: float  # T1 level of white matter (95th percentile of the head)
    source: str


@functools.cache
def _template(name: str) -> _Template:
    if name == "mni":
        real = anatomy.mni_t1()
    elif name == "colin27":
        real = anatomy.colin27_t1()
    else:
        raise ValueError(f"template={name!r}; expected one of {', '.join(TEMPLATES)}")
    # one 1 mm grid for both: fast to warp and fine enough for a 2-3 mm working grid
    factors = [s / 1.0 for s in real.spacing]
    t1 = ndimage.zoom(real.values, factors, order=1) if any(f != 1 for f in factors) else real.values
    t1 = np.asarray(t1, dtype=np.float32)
    head = t1[t1 > 0.05 * float(t1.max())]
    csf, wm = (float(v) for v in np.percentile(head, [5, 95]))
    return _Template(t1=t1, csf=csf, wm=wm, source=real.source)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian noise smoothed by ``sigma`` voxels, rescaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return field / max(float(field.std()), 1e-6)


def _coarse_field(rng: np.random.Generator, shape: tuple[int, int, int], knots: int = 5) -> np.ndarray:
    """A smooth random field of unit amplitude: a few knots per axis, cubic interpolation."""
    coarse = rng.standard_normal((knots, knots, knots)).astype(np.float32)
    # separable cubic interpolation: one small (n, knots) matrix per axis, much faster than a 3D zoom
    basis = [ndimage.zoom(np.eye(knots, dtype=np.float32), (n / knots, 1), order=3)[:n] for n in shape]
    field = np.tensordot(basis[0], coarse, axes=(1, 0))
    field = np.tensordot(basis[1], field, axes=(1, 1)).transpose(1, 0, 2)
    return np.tensordot(field, basis[2], axes=(2, 1))


def _warp(template: _Template, rng: np.random.Generator, spacing: np.ndarray) -> np.ndarray:
    """Sample the template through a random affine + elastic map onto a grid of ``spacing``."""
    source_shape = np.array(template.t1.shape)
    shape = tuple(int(n) for n in np.ceil(source_shape / spacing))
    centre_out = (np.array(shape) - 1) / 2 * spacing
    centre_in = (source_shape - 1) / 2
    angles = np.radians(rng.uniform(-10, 10, 3))
    rotation = np.eye(3)
    for axis, angle in enumerate(angles):
        a, b = [i for i in range(3) if i != axis]
        r = np.eye(3)
        r[a, a] = r[b, b] = np.cos(angle)
        r[a, b], r[b, a] = -np.sin(angle), np.sin(angle)
        rotation = rotation @ r
    matrix = rotation @ np.diag(1 / rng.uniform(0.88, 1.12, 3))
    shift = rng.uniform(-6, 6, 3)
    grid = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij"), axis=0)
    points = grid * spacing[:, None, None, None].astype(np.float32) - centre_out[:, None, None, None].astype(np.float32)
    mapped = np.tensordot(matrix.astype(np.float32), points, axes=1)
    amplitude = rng.uniform(2.0, 5.0)  # mm of elastic displacement
    for axis in range(3):
        mapped[axis] += amplitude * _coarse_field(rng, shape) + shift[axis] + centre_in[axis]
    return ndimage.map_coordinates(template.t1, mapped, order=1, mode="constant", cval=0.0).astype(np.float32)


def _tumour(
    rng: np.random.Generator, t1: np.ndarray, template: _Template, spacing: np.ndarray
) -> np.ndarray:
    """Grow a tumour with oedema in the white matter; return BraTS labels."""
    labels = np.zeros(t1.shape, dtype=np.uint8)
    # filled, so that depth is measured from the outside of the head, not from CSF or a dark skull
    head = ndimage.binary_fill_holes(ndimage.binary_closing(t1 > 0.3 * template.csf, iterations=2))
    depth = ndimage.distance_transform_edt(head, sampling=spacing)
    whiteness = (t1 - template.csf) / (template.wm - template.csf)
    candidates = np.argwhere((depth > 28.0) & (whiteness > 0.7))
    if len(candidates) == 0 or rng.random() < 0.1:
        return labels
    centre = candidates[rng.integers(len(candidates))] * spacing
    coords = np.stack(np.meshgrid(*(np.arange(n) * s for n, s in zip(t1.shape, spacing, strict=True)),
                                  indexing="ij"), axis=-1)
    radius = rng.uniform(7.0, 22.0)
    stretch = rng.uniform(0.75, 1.3, 3)
    distance = np.linalg.norm((coords - centre) / stretch, axis=-1) / radius
    lumpy = 0.25 * _smooth_noise(rng, t1.shape, 4.0 / float(spacing.mean()))
    core_shape = distance + lumpy
    tissue = head & (depth > 4.0)
    tumour = (core_shape < 1.0) & tissue
    necrosis_fraction = rng.uniform(0.0, 0.75)
    necrosis = tumour & (core_shape + 0.15 * _smooth_noise(rng, t1.shape, 2.0) < necrosis_fraction)
    oedema_reach = rng.uniform(1.3, 2.3)
    oedema_shape = distance / oedema_reach + 0.3 * _smooth_noise(rng, t1.shape, 6.0 / float(spacing.mean()))
    oedema = (oedema_shape < 1.0) & tissue & (whiteness > 0.25)
    labels[oedema] = 2
    labels[tumour] = 3
    labels[necrosis] = 1
    return labels


def _vessels(rng: np.random.Generator, shape: tuple[int, int, int], head: np.ndarray) -> np.ndarray:
    """A few thin, bright, winding tubes (enhancing vessels and dura: distractors on T1c)."""
    mask = np.zeros(shape, dtype=bool)
    inside = np.argwhere(head)
    for _ in range(int(rng.integers(2, 6))):
        point = inside[rng.integers(len(inside))].astype(float)
        step = rng.standard_normal(3)
        for _ in range(int(rng.integers(15, 40))):
            step = 0.7 * step + 0.3 * rng.standard_normal(3)
            point = np.clip(point + step / max(np.linalg.norm(step), 1e-6), 0, np.array(shape) - 1)
            mask[tuple(np.rint(point).astype(int))] = True
    return mask & head


def _contrasts(
    rng: np.random.Generator, t1: np.ndarray, labels: np.ndarray, template: _Template
) -> dict[str, np.ndarray]:
    whiteness = np.clip((t1 - template.csf) / (template.wm - template.csf), 0.0, 1.0)
    head = t1 > 0.3 * template.csf
    texture = 1.0 + 0.08 * _smooth_noise(rng, t1.shape, 1.0)
    necrosis, oedema, enhancing = labels == 1, labels == 2, labels == 3
    t1c = t1 / template.wm
    t1c = np.where(oedema, t1c * rng.uniform(0.75, 0.9), t1c)
    t1c = np.where(necrosis, rng.uniform(0.2, 0.4) * texture, t1c)
    t1c = np.where(enhancing, rng.uniform(1.25, 1.7) * texture, t1c)
    t1c = np.where(_vessels(rng, t1.shape, head) & ~(labels > 0), rng.uniform(1.2, 1.6), t1c)
    flair = np.interp(whiteness, [0.0, 0.5, 1.0], [0.12, 1.0, 0.72]) * head
    flair = np.where(oedema, rng.uniform(1.3, 1.7) * texture, flair)
    flair = np.where(enhancing, rng.uniform(1.15, 1.6) * texture, flair)
    flair = np.where(necrosis, rng.uniform(0.5, 1.4) * texture, flair)
    images = {}
    for name, image in (("flair", flair), ("t1c", t1c)):
        image = ndimage.gaussian_filter(image.astype(np.float32), rng.uniform(0.3, 0.8))
        bias = np.exp(0.15 * _coarse_field(rng, t1.shape, knots=3))
        sigma = rng.uniform(0.015, 0.05)
        real = image * bias + rng.normal(0.0, sigma, t1.shape)
        magnitude = np.hypot(real, rng.normal(0.0, sigma, t1.shape))  # Rician
        images[name] = (magnitude * rng.uniform(300.0, 900.0)).astype(np.float32)
    return images


def make_case(
    seed: int,
    *,
    spacing: tuple[float, float, float] = (2.0, 2.0, 2.0),
    template: str | None = None,
) -> BrainTumourCase:
    """Make one case: a warped real brain with (usually) a tumour, in FLAIR and T1c contrast.

    Parameters
    ----------
    seed : int
        Seeds everything (template choice, warp, tumour, contrast, bias, noise).
    spacing : tuple[float, float, float], optional
        Voxel size (z, y, x) in mm of the grid the case is sampled on.
    template : str or None, optional
        ``"mni"`` or ``"colin27"``; chosen by the seed when None (MNI two times in three).

    Returns
    -------
    BrainTumourCase
        Images and labels on one grid covering the whole head.

    Raises
    ------
    ValueError
        If ``template`` is unknown or a spacing is not positive.
    anatomy.AnatomyUnavailable
        If the template's package is not installed.
    """
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing={spacing!r} must be three positive numbers")
    rng = np.random.default_rng(seed)
    name = template or str(TEMPLATES[0] if rng.random() < 2 / 3 else TEMPLATES[1])
    chosen = _template(name)
    step = np.asarray(spacing, dtype=float)
    t1 = _warp(chosen, rng, step)
    labels = _tumour(rng, t1, chosen, step)
    images = _contrasts(rng, t1, labels, chosen)
    return BrainTumourCase(images=images, labels=labels, spacing=tuple(float(s) for s in spacing),  # type: ignore[arg-type]
                           template=name, source=chosen.source)


#: SeriesDescription of each contrast in :func:`case_series` (what contrast detection reads).
SERIES_DESCRIPTIONS = {"flair": "AX T2 FLAIR (synthetic tumour)", "t1c": "AX T1 post Gd (synthetic tumour)"}


def case_series(
    case: BrainTumourCase, contrast: str, *, seed: int = 0, study_instance_uid: str | None = None
) -> list[Dataset]:
    """Write one contrast of a case as an axial MR series (rows anterior -> posterior, columns right -> left).

    Parameters
    ----------
    case : BrainTumourCase
        The case.
    contrast : str
        ``"flair"`` or ``"t1c"``.
    seed : int, optional
        Seeds the UIDs.
    study_instance_uid : str or None, optional
        Put both contrasts in one study.

    Returns
    -------
    list[Dataset]
        One MR Image Storage instance per slice (BodyPartExamined BRAIN); its voxel ``(k, j, i)``
        is ``case.labels[k, j, i]``.
    """
    image = case.images[contrast]
    grid = Grid(image.shape, case.spacing, AXIAL)  # type: ignore[arg-type]
    return make_series(image, grid, modality="MR", seed=seed, series_number=2 if contrast == "flair" else 3,
                       series_description=SERIES_DESCRIPTIONS[contrast], study_instance_uid=study_instance_uid,
                       patient_name="SYNTHETIC^BRAIN^TUMOUR", patient_id=f"SYN-BT-{seed:04d}", body_part="BRAIN")
