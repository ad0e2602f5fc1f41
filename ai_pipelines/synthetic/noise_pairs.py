"""Paired (noisy, clean) slices made from real clean anatomy, for training and evaluating denoising.

No real low-/full-dose pairs can be had here, so the noise is simulated on real anatomy
(:mod:`ai_pipelines.synthetic.anatomy`):

- **Low-dose CT** (:func:`low_dose_ct`): the slice (HU) becomes attenuation (mu_water
  0.02/mm), is projected (scikit-image ``radon``, 256 angles over 180 degrees) to line
  integrals, turned into photon counts ``I0 * exp(-p)`` with ``I0`` the dose (incident photons
  per detector bin), drawn Poisson, logged back and reconstructed by filtered back projection
  (``iradon``, Shepp-Logan filter). The clean target is the same reconstruction of the
  noiseless sinogram, so that a pair differs by dose only (noise and streaks), not by blur.
- **MR** (:func:`noisy_mr`): the slice's k-space loses random phase-encoding lines outside a
  fully sampled centre (undersampling: aliasing and ringing), complex Gaussian noise is added
  and the magnitude taken (Rician noise in the image).

Slices are split by anatomy (:data:`HELD_OUT`) so that evaluation never sees a slice, or its
immediate neighbours, that training saw: training uses the head CT, the first 12 abdomen CT
slices, the MNI template and colin27 outside its held-out slab; evaluation uses the head CT
slab ``HELD_OUT["head_ct"]``, abdomen slices 14-19 and the colin27 slab.

Values: CT pairs are in HU, MR pairs in units of the source volume's 99.5th percentile of
the foreground (so about 0-1.2).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset
from skimage.transform import iradon, radon, resize

from ai_pipelines.synthetic import anatomy
from ai_pipelines.synthetic.series import Grid, make_series

__all__ = [
    "CT_DOSE_RANGE",
    "HELD_OUT",
    "MR_NOISE_RANGE",
    "MU_WATER",
    "NoisePair",
    "clean_slices",
    "held_out_series",
    "low_dose_ct",
    "make_pairs",
    "mr_scale",
    "noisy_mr",
    "random_crops",
]

#: Linear attenuation of water (1/mm) at about 70 keV.
MU_WATER = 0.02
#: Incident photons per detector bin drawn log-uniformly from this range (low dose -> high noise).
CT_DOSE_RANGE = (3e4, 5e5)
#: Noise sigma of MR (fraction of the 99.5th percentile) drawn uniformly from this range.
MR_NOISE_RANGE = (0.02, 0.08)
#: Slices kept for evaluation (half-open ranges of the source's z index); training skips them
#: and GAP slices either side.
HELD_OUT = {"head_ct": (70, 86), "abdomen_ct": (14, 20), "colin27_t1": (80, 100)}
GAP = 2
_SIZE = 256
_ANGLES = 256

Split = Literal["train", "test"]


@dataclass(frozen=True, slots=True)
class NoisePair:
    """One noisy slice and its clean target.

    Parameters
    ----------
    noisy, clean : numpy.ndarray
        ``(y, x)`` float32, HU for CT, normalised intensity for MR.
    modality : str
        ``"CT"`` or ``"MR"``.
    source : str
        The anatomy it was made from and the slice index.
    level : float
        CT: incident photons (dose); MR: noise sigma.
    """

    noisy: np.ndarray
    clean: np.ndarray
    modality: str
    source: str
    level: float


def _circle(size: int) -> np.ndarray:
    # skimage.radon's own test for circle=True: centre size // 2, radius size // 2
    yy, xx = np.mgrid[:size, :size]
    centre = size // 2
    return (yy - centre) ** 2 + (xx - centre) ** 2 <= (centre - 1) ** 2


def _fbp(sinogram: np.ndarray, pixel_mm: float, size: int) -> np.ndarray:
    theta = np.linspace(0.0, 180.0, sinogram.shape[1], endpoint=False)
    mu = iradon(sinogram / pixel_mm, theta, circle=True, filter_name="shepp-logan", output_size=size)
    return ((mu / MU_WATER - 1.0) * 1000.0).astype(np.float32)


@functools.lru_cache(maxsize=512)
def _ct_sinogram(key: tuple[str, int]) -> tuple[np.ndarray, np.ndarray, float]:
    """(clean sinogram in line integrals, clean FBP in HU, pixel mm) of one source slice."""
    name, index = key
    values, pixel_mm = _ct_slice(name, index)
    size = values.shape[0]
    mu = np.where(_circle(size), np.clip(MU_WATER * (1.0 + values / 1000.0), 0.0, None), 0.0)
    theta = np.linspace(0.0, 180.0, _ANGLES, endpoint=False)
    sinogram = radon(mu, theta, circle=True) * pixel_mm
    return sinogram, _fbp(sinogram, pixel_mm, size), pixel_mm


def _ct_slice(name: str, index: int) -> tuple[np.ndarray, float]:
    volume = anatomy.head_ct() if name == "head_ct" else anatomy.abdomen_ct()
    values = volume.values[index]
    factor = values.shape[0] / _SIZE
    if factor != 1:
        values = resize(values, (_SIZE, _SIZE), order=1, preserve_range=True, anti_aliasing=True)
    return values.astype(np.float32), float(volume.spacing[1] * factor)


def low_dose_ct(
    hu: np.ndarray, *, pixel_mm: float, incident_photons: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate a low-dose acquisition of one CT slice in the projection domain.

    Parameters
    ----------
    hu : numpy.ndarray
        Square ``(n, n)`` slice in HU; what lies outside the inscribed circle is treated as air.
    pixel_mm : float
        Pixel size in mm (line integrals are in mm).
    incident_photons : float
        Photons per detector bin (I0): lower is a lower dose and more noise.
    rng : numpy.random.Generator
        Source of the Poisson noise.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        (low-dose FBP, noiseless FBP), both ``(n, n)`` float32 in HU.

    Raises
    ------
    ValueError
        If the slice is not square or the dose is not positive.
    """
    if hu.ndim != 2 or hu.shape[0] != hu.shape[1]:
        raise ValueError(f"a CT slice must be square, got {hu.shape}")
    if not incident_photons > 0:
        raise ValueError(f"incident_photons={incident_photons!r} must be > 0")
    size = hu.shape[0]
    mu = np.where(_circle(size), np.clip(MU_WATER * (1.0 + hu / 1000.0), 0.0, None), 0.0)
    theta = np.linspace(0.0, 180.0, _ANGLES, endpoint=False)
    sinogram = radon(mu, theta, circle=True) * pixel_mm
    return _noisy_fbp(sinogram, pixel_mm, incident_photons, rng), _fbp(sinogram, pixel_mm, size)


def _noisy_fbp(sinogram: np.ndarray, pixel_mm: float, photons: float, rng: np.random.Generator) -> np.ndarray:
    counts = rng.poisson(photons * np.exp(-sinogram))
    # a detector bin that counted nothing reads as one photon (photon starvation -> streaks)
    noisy = -np.log(np.maximum(counts, 1) / photons)
    return _fbp(noisy, pixel_mm, sinogram.shape[0])


def noisy_mr(
    image: np.ndarray, *, sigma: float, keep_fraction: float, rng: np.random.Generator,
    centre_fraction: float = 0.12,
) -> np.ndarray:
    """Undersample an MR slice in k-space and add Rician noise.

    Parameters
    ----------
    image : numpy.ndarray
        ``(y, x)`` clean magnitude image; rows are the phase-encoding direction.
    sigma : float
        Standard deviation of the complex Gaussian noise in the image domain (same units):
        ``sigma / sqrt(2)`` in each of the real and imaginary parts (the Rician parameter).
    keep_fraction : float
        Fraction of phase-encoding lines acquired, in (0, 1]; 1 is fully sampled.
    rng : numpy.random.Generator
        Source of the noise and of the line pattern.
    centre_fraction : float, optional
        Fraction of central lines always acquired (contrast lives there).

    Returns
    -------
    numpy.ndarray
        ``(y, x)`` float32 magnitude with aliasing and Rician noise.

    Raises
    ------
    ValueError
        If a fraction is outside (0, 1] or sigma is negative.
    """
    if not 0 < keep_fraction <= 1 or not 0 < centre_fraction <= 1:
        raise ValueError(f"keep_fraction={keep_fraction!r} and centre_fraction={centre_fraction!r} must be in (0, 1]")
    if sigma < 0:
        raise ValueError(f"sigma={sigma!r} must be >= 0")
    rows = image.shape[0]
    kspace = np.fft.fftshift(np.fft.fft2(image.astype(np.float64)))
    distance = np.abs(np.arange(rows) - rows // 2)
    centre = distance <= max(1, int(rows * centre_fraction / 2))
    extra = max(0.0, (keep_fraction * rows - centre.sum()) / max(1, (~centre).sum()))
    lines = centre | (rng.random(rows) < extra)
    # keep the signal energy: the zero-filled image is scaled by nothing (as a scanner would)
    kspace[~lines] = 0
    # noise of std sigma per pixel in the image domain = sigma * sqrt(N) per k-space sample
    scale = sigma * np.sqrt(image.size)
    kspace[lines] += scale * (rng.standard_normal((lines.sum(), image.shape[1]))
                              + 1j * rng.standard_normal((lines.sum(), image.shape[1]))) / np.sqrt(2)
    return np.abs(np.fft.ifft2(np.fft.ifftshift(kspace))).astype(np.float32)


def mr_scale(values: np.ndarray) -> float:
    """The 99.5th percentile of the foreground (above 10 % of the maximum), used to normalise MR."""
    foreground = values[values > 0.1 * float(values.max())]
    return float(np.percentile(foreground, 99.5)) if foreground.size else 1.0


@functools.cache
def _mr_volume(name: str) -> np.ndarray:
    if name == "mni_t1":
        values = anatomy.mni_t1().values
    else:
        # colin27 is 0.5 mm: average 2x2 in-plane and take every second slice -> 1 mm like MNI
        values = anatomy.colin27_t1().values[::2]
        values = values[:, : values.shape[1] // 2 * 2, : values.shape[2] // 2 * 2]
        values = values.reshape(values.shape[0], values.shape[1] // 2, 2, values.shape[2] // 2, 2).mean(axis=(2, 4))
    return (values / mr_scale(values)).astype(np.float32)


def _indices(name: str, split: Split, count: int) -> list[int]:
    lo, hi = HELD_OUT.get(name, (0, 0))
    if split == "test":
        return list(range(lo, hi))
    keep = [k for k in range(count) if not lo - GAP <= k < hi + GAP]
    if name == "head_ct":
        keep = [k for k in keep if 8 <= k < count - 4]  # the first and last slices are mostly air
    return keep


def clean_slices(split: Split) -> list[tuple[str, int]]:
    """(source name, slice index) of the clean slices in a split (see :data:`HELD_OUT`).

    MR slices with little brain (under 15 % of the slice above 0.1) are left out.
    """
    items = [("head_ct", k) for k in _indices("head_ct", split, anatomy.head_ct().values.shape[0])]
    items += [("abdomen_ct", k) for k in _indices("abdomen_ct", split, anatomy.abdomen_ct().values.shape[0])]
    for name in ("mni_t1", "colin27_t1"):
        if name == "mni_t1" and split == "test":
            continue
        volume = _mr_volume(name)
        for k in _indices(name, split, volume.shape[0]):
            if (volume[k] > 0.1).mean() >= 0.15:
                items.append((name, k))
    return items


def make_pairs(
    split: Split, *, seed: int, per_slice: int = 1, limit: int | None = None, modalities: Sequence[str] = ("CT", "MR"),
) -> list[NoisePair]:
    """Make (noisy, clean) pairs from the clean slices of ``split``.

    Parameters
    ----------
    split : {"train", "test"}
        Which anatomy (disjoint, see :data:`HELD_OUT`).
    seed : int
        Seeds the dose/noise levels, the noise and the choice of slices; the same seed gives
        the same pairs.
    per_slice : int, optional
        Noise realisations per clean slice (the slow CT projection is computed once).
    limit : int or None, optional
        Keep at most this many clean slices per modality, chosen evenly through the split.
    modalities : Sequence[str], optional
        ``"CT"`` and/or ``"MR"``.

    Returns
    -------
    list[NoisePair]
        CT pairs (256 x 256, HU) then MR pairs (1 mm, normalised).
    """
    rng = np.random.default_rng(seed)
    pairs: list[NoisePair] = []
    items = clean_slices(split)
    for modality in ("CT", "MR"):
        if modality not in modalities:
            continue
        chosen = [it for it in items if (it[0].endswith("_ct")) == (modality == "CT")]
        if limit is not None and len(chosen) > limit:
            chosen = [chosen[int(i)] for i in np.linspace(0, len(chosen) - 1, limit).round()]
        for name, index in chosen:
            for _ in range(per_slice):
                pairs.append(_pair(name, index, rng))
    return pairs


def _pair(name: str, index: int, rng: np.random.Generator) -> NoisePair:
    source = f"{name}[{index}]"
    if name.endswith("_ct"):
        sinogram, clean, pixel_mm = _ct_sinogram((name, index))
        photons = float(np.exp(rng.uniform(*np.log(CT_DOSE_RANGE))))
        noisy = _noisy_fbp(sinogram, pixel_mm, photons, rng)
        return NoisePair(noisy=noisy, clean=clean, modality="CT", source=source, level=photons)
    clean = _mr_volume(name)[index]
    sigma = float(rng.uniform(*MR_NOISE_RANGE))
    keep = float(rng.choice([1.0, 0.75, 0.6]))
    noisy = noisy_mr(clean, sigma=sigma, keep_fraction=keep, rng=rng)
    return NoisePair(noisy=noisy, clean=clean.copy(), modality="MR", source=source, level=sigma)


def random_crops(
    pairs: Sequence[NoisePair], *, size: int, count: int, rng: np.random.Generator, min_foreground: float = 0.3,
) -> list[tuple[NoisePair, tuple[int, int]]]:
    """Pick ``count`` crops of ``size`` x ``size`` (pair, top-left corner) with enough anatomy.

    A crop is redrawn (up to 10 times) while less than ``min_foreground`` of its clean pixels
    are above air (-500 HU for CT, 0.1 for MR).
    """
    crops = []
    for _ in range(count):
        pair = pairs[int(rng.integers(len(pairs)))]
        floor = -500.0 if pair.modality == "CT" else 0.1
        for _attempt in range(10):
            y = int(rng.integers(0, pair.clean.shape[0] - size + 1))
            x = int(rng.integers(0, pair.clean.shape[1] - size + 1))
            if (pair.clean[y:y + size, x:x + size] > floor).mean() >= min_foreground:
                break
        crops.append((pair, (y, x)))
    return crops


def held_out_series(
    modality: str, *, count: int = 4, seed: int = 0, level: float | None = None,
) -> tuple[list[Dataset], np.ndarray, np.ndarray]:
    """A small DICOM series of consecutive held-out slices with one noise level, and its truth.

    CT: head CT slices from ``HELD_OUT["head_ct"]``, at ``level`` incident photons
    (default 5e4, a low dose); MR: colin27 slices from its held-out slab at noise sigma
    ``level`` (default 0.05) with 75 % of the k-space lines, stored as intensity x 1000.

    Parameters
    ----------
    modality : str
        ``"CT"`` or ``"MR"``.
    count : int, optional
        Slices (at most the slab's size).
    seed : int, optional
        Seeds the noise and the UIDs.
    level : float or None, optional
        Dose or noise level (see above).

    Returns
    -------
    tuple[list[Dataset], numpy.ndarray, numpy.ndarray]
        The noisy series (as :func:`~ai_pipelines.synthetic.series.make_series` writes it),
        the clean ``(z, y, x)`` values and the noisy values, both in the series' units
        (HU for CT) before the 12-bit storage clipped them.

    Raises
    ------
    ValueError
        If the modality is not CT or MR or ``count`` does not fit the slab.
    """
    name = {"CT": "head_ct", "MR": "colin27_t1"}.get(modality)
    if name is None:
        raise ValueError(f"modality={modality!r}; expected CT or MR")
    lo, hi = HELD_OUT[name]
    if not 1 <= count <= hi - lo:
        raise ValueError(f"count={count!r}; the held-out slab has {hi - lo} slices")
    rng = np.random.default_rng(seed)
    noisy, clean = [], []
    for index in range(lo, lo + count):
        if modality == "CT":
            sinogram, target, pixel_mm = _ct_sinogram((name, index))
            noisy.append(_noisy_fbp(sinogram, pixel_mm, level or 5e4, rng))
            clean.append(target)
            spacing = (float(anatomy.head_ct().spacing[0]), pixel_mm, pixel_mm)
        else:
            target = _mr_volume(name)[index] * 1000.0
            noisy.append(noisy_mr(target, sigma=(level or 0.05) * 1000.0, keep_fraction=0.75, rng=rng))
            clean.append(target)
            spacing = (1.0, 1.0, 1.0)
    noisy_values, clean_values = np.stack(noisy), np.stack(clean).astype(np.float32)
    grid = Grid(noisy_values.shape, spacing)  # type: ignore[arg-type]
    description = "low dose CT head" if modality == "CT" else "T1 noisy"
    datasets = make_series(noisy_values, grid, modality=modality, seed=seed, series_description=description,
                           body_part="HEAD")
    return datasets, clean_values, noisy_values
