"""ai_pipelines.synthetic.noise_pairs: simulated low-dose CT and noisy MR pairs from real anatomy."""

from __future__ import annotations

import numpy as np
import pytest

from ai_pipelines.synthetic import noise_pairs
from ai_pipelines.synthetic.noise_pairs import (
    HELD_OUT,
    NoisePair,
    clean_slices,
    held_out_series,
    low_dose_ct,
    make_pairs,
    noisy_mr,
    random_crops,
)


def _disc(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    hu[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2] = 40.0
    return hu


def test_low_dose_ct_noise_falls_with_dose_and_keeps_the_anatomy() -> None:
    hu = _disc()
    stds = []
    for photons in (1e4, 1e5, 1e6):
        noisy, clean = low_dose_ct(hu, pixel_mm=2.0, incident_photons=photons, rng=np.random.default_rng(0))
        assert noisy.shape == clean.shape == hu.shape and noisy.dtype == np.float32
        stds.append(float((noisy - clean)[24:40, 24:40].std()))
    assert stds[0] > stds[1] > stds[2] > 0
    # the noiseless reconstruction is the phantom up to FBP blur: water stays near 40 HU
    assert abs(float(clean[28:36, 28:36].mean()) - 40.0) < 25.0


def test_low_dose_ct_is_seeded_and_refuses_bad_input() -> None:
    hu = _disc(32)
    a, _ = low_dose_ct(hu, pixel_mm=1.0, incident_photons=1e4, rng=np.random.default_rng(5))
    b, _ = low_dose_ct(hu, pixel_mm=1.0, incident_photons=1e4, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="square"):
        low_dose_ct(hu[:, :20], pixel_mm=1.0, incident_photons=1e4, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="must be > 0"):
        low_dose_ct(hu, pixel_mm=1.0, incident_photons=0, rng=np.random.default_rng(0))


def test_noisy_mr_is_rician_and_undersampled() -> None:
    image = np.zeros((64, 64), dtype=np.float32)
    image[16:48, 16:48] = 1.0
    same = noisy_mr(image, sigma=0.0, keep_fraction=1.0, rng=np.random.default_rng(0))
    np.testing.assert_allclose(same, image, atol=1e-5)
    aliased = noisy_mr(image, sigma=0.0, keep_fraction=0.5, rng=np.random.default_rng(0))
    assert np.abs(aliased - image).mean() > 0.01
    noisy = noisy_mr(image, sigma=0.1, keep_fraction=1.0, rng=np.random.default_rng(0))
    assert noisy.min() >= 0  # a magnitude image
    background = noisy[:10, :10]
    # Rician background (parameter sigma / sqrt(2) per part): mean sigma / sqrt(2) * sqrt(pi / 2), not 0
    assert background.mean() == pytest.approx(0.1 / np.sqrt(2) * np.sqrt(np.pi / 2), rel=0.15)
    with pytest.raises(ValueError):
        noisy_mr(image, sigma=0.1, keep_fraction=0.0, rng=np.random.default_rng(0))


def test_splits_are_disjoint_with_a_gap() -> None:
    train, test = set(clean_slices("train")), set(clean_slices("test"))
    assert train and test and not train & test
    for name, (lo, hi) in HELD_OUT.items():
        assert {k for n, k in test if n == name} == set(range(lo, hi))
        near = {k for n, k in train if n == name and lo - noise_pairs.GAP <= k < hi + noise_pairs.GAP}
        assert not near
    assert not any(name == "mni_t1" for name, _ in test)


def test_make_pairs_is_seeded_and_in_range() -> None:
    a = make_pairs("test", seed=3, limit=2)
    b = make_pairs("test", seed=3, limit=2)
    assert [p.modality for p in a] == ["CT", "CT", "MR", "MR"]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.noisy, y.noisy)
        assert x.source == y.source and x.level == y.level
    ct, mr = a[0], a[2]
    assert ct.clean.shape == (256, 256) and -1100 < ct.clean.min() and ct.clean.max() < 3100
    assert noise_pairs.CT_DOSE_RANGE[0] <= ct.level <= noise_pairs.CT_DOSE_RANGE[1]
    assert 0 <= mr.clean.min() and 0.9 < np.percentile(mr.clean, 99.9) < 1.5
    assert make_pairs("test", seed=4, limit=2)[0].level != ct.level


def test_random_crops_prefer_anatomy() -> None:
    clean = np.zeros((100, 100), dtype=np.float32)
    clean[60:, 60:] = 1.0
    pair = NoisePair(noisy=clean, clean=clean, modality="MR", source="test", level=0.0)
    crops = random_crops([pair], size=32, count=20, rng=np.random.default_rng(0))
    assert len(crops) == 20
    inside = [(clean[y:y + 32, x:x + 32] > 0.1).mean() for _, (y, x) in crops]
    # crops drawn uniformly would hold >= 30 % anatomy in far fewer (about one in six)
    assert np.mean([f >= 0.3 for f in inside]) >= 0.8


def test_held_out_series_is_a_dicom_series_of_the_noisy_values() -> None:
    datasets, clean, noisy = held_out_series("MR", count=3, seed=1)
    assert len(datasets) == 3 and clean.shape == noisy.shape == (3, datasets[0].Rows, datasets[0].Columns)
    assert {ds.Modality for ds in datasets} == {"MR"}
    np.testing.assert_allclose(datasets[1].pixel_array, np.clip(np.rint(noisy[1]), 0, 4095))
    with pytest.raises(ValueError, match="expected CT or MR"):
        held_out_series("PT")
