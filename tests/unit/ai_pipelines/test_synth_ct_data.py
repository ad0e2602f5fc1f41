"""synth_ct data: MR-like images derived from real CT, the split, body masks and MR normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from ai_pipelines.synth_ct.baseline import BONE_HU, SOFT_TISSUE_HU, bulk_density
from ai_pipelines.synth_ct.model import hu_to_unit, unit_to_hu
from ai_pipelines.synth_ct.preprocess import CLIP, mr_body_mask, normalise_mr
from ai_pipelines.synthetic import anatomy
from ai_pipelines.synthetic.mr_from_ct import (
    AIR_HU,
    HU_RANGE,
    T1,
    T2,
    Contrast,
    body_mask_ct,
    ct_target,
    derived_mr_series,
    heldout_ct,
    mr_from_ct,
    training_ct,
)


@pytest.fixture(scope="module")
def head() -> anatomy.RealVolume:
    try:
        return anatomy.head_ct()
    except anatomy.AnatomyUnavailable as exc:
        pytest.skip(str(exc))


def _tissues() -> np.ndarray:
    """A flat 2D 'patient': air around a body of fat, water, soft tissue and cortical bone."""
    hu = np.full((64, 64), -1000.0)
    hu[8:56, 8:56] = 40.0   # soft tissue
    hu[12:28, 12:28] = -100.0  # fat
    hu[36:52, 12:28] = 5.0  # water / CSF
    hu[12:28, 36:52] = 1500.0  # cortical bone
    return hu


def _exact(hu: np.ndarray, contrast: Contrast) -> np.ndarray:
    return mr_from_ct(hu, (1.0, 1.0), rng=np.random.default_rng(0), contrast=contrast, jitter=0.0,
                      noise=(0.0, 0.0), bias=0.0)


def test_contrasts_order_tissues_as_t1_and_t2() -> None:
    hu = _tissues()
    t1, t2 = _exact(hu, T1), _exact(hu, T2)
    fat = (slice(16, 24), slice(16, 24))
    water = (slice(40, 48), slice(16, 24))
    soft = (slice(40, 48), slice(40, 48))
    bone = (slice(16, 24), slice(40, 48))
    m1 = {k: float(t1[v].mean()) for k, v in dict(fat=fat, water=water, soft=soft, bone=bone).items()}
    m2 = {k: float(t2[v].mean()) for k, v in dict(fat=fat, water=water, soft=soft, bone=bone).items()}
    assert m1["fat"] > m1["soft"] > m1["water"] > m1["bone"]  # T1: fat bright, fluid dark
    assert m2["water"] > m2["fat"] > m2["soft"] > m2["bone"]  # T2: fluid brightest
    assert m1["bone"] < 0.1 * m1["fat"] and m2["bone"] < 0.1 * m2["water"]  # cortical bone: no signal
    assert t1[0:4, 0:4].max() == 0.0  # no noise asked for: air outside the body is exactly dark


def test_mr_from_ct_is_seeded_shaped_and_non_negative(head: anatomy.RealVolume) -> None:
    hu = head.values[50:53]
    a = mr_from_ct(hu, head.spacing, rng=np.random.default_rng(5))
    b = mr_from_ct(hu, head.spacing, rng=np.random.default_rng(5))
    c = mr_from_ct(hu, head.spacing, rng=np.random.default_rng(6))
    assert a.shape == hu.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0.0  # Rician magnitude
    body = body_mask_ct(hu)
    assert np.median(a[~body]) < 0.1 * np.median(a[body])  # background is noise only


def test_mr_from_ct_refuses_wrong_spacing() -> None:
    with pytest.raises(ValueError, match="spacing"):
        mr_from_ct(np.zeros((4, 4)), (1.0, 1.0, 1.0), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="increase"):
        Contrast("X", (0.0, 0.0), (0.0, 1.0))


def test_body_mask_drops_the_head_holder_and_fills_the_skull(head: anatomy.RealVolume) -> None:
    plane = head.values[50]
    body = body_mask_ct(plane)
    # the curved head holder (about 850 pixels above -400 HU, thin, apart from the head) is not body
    holder = (plane > -400) & ~body
    assert holder.sum() > 500
    assert body.sum() > 20000
    centre = tuple(int(v) for v in np.argwhere(body).mean(axis=0))
    assert body[centre]  # brain inside the skull is body
    target = ct_target(plane[None], body[None])[0]
    assert target.min() >= HU_RANGE[0] and target.max() <= HU_RANGE[1]
    assert np.all(target[~body] == AIR_HU)


def test_training_and_heldout_slices_are_disjoint(head: anatomy.RealVolume) -> None:
    train, held = training_ct(), heldout_ct()
    assert [p.source.endswith("(held out)") for p in held] == [True, True]
    assert all(p.source.endswith("(training)") for p in train)
    train_slices = {s.tobytes() for p in train for s in p.values}
    for piece in held:
        assert not any(s.tobytes() in train_slices for s in piece.values)
    assert held[0].values.shape[0] == 20 and sum(p.values.shape[0] for p in train) == 92


def test_normalisation_ignores_scale_and_finds_the_body(head: anatomy.RealVolume) -> None:
    hu = head.values[48:52]
    mr = mr_from_ct(hu, head.spacing, rng=np.random.default_rng(1))
    a, mask = normalise_mr(mr)
    b, _ = normalise_mr(mr * 7.5)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert 0.0 <= a.min() and a.max() <= CLIP
    assert abs(float(np.percentile(a[mask], 99)) - 1.0) < 1e-3
    truth = body_mask_ct(hu)
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice > 0.97
    with pytest.raises(ValueError, match="no body"):
        normalise_mr(np.zeros((2, 16, 16), dtype=np.float32))
    assert not mr_body_mask(np.zeros((16, 16))).any()


def test_hu_scaling_round_trips() -> None:
    hu = np.array([-1024.0, -1000.0, 0.0, 40.0, 1200.0, 3000.0], dtype=np.float32)
    np.testing.assert_allclose(unit_to_hu(hu_to_unit(hu)), hu, atol=1e-3)
    assert hu_to_unit(np.array([-5000.0, 9000.0])).tolist() == [-1.0, 1.0]


def test_bulk_density_assigns_three_values(head: anatomy.RealVolume) -> None:
    case = derived_mr_series(count=2)
    values = np.stack([ds.pixel_array for ds in case.datasets]).astype(np.float32)
    hu, body = bulk_density(values)
    assert set(np.unique(hu)) <= {AIR_HU, SOFT_TISSUE_HU, BONE_HU}
    assert (hu[body] == BONE_HU).any() and (hu[body] == SOFT_TISSUE_HU).any()


def test_derived_mr_series_is_a_small_axial_mr_with_truth(head: anatomy.RealVolume) -> None:
    case = derived_mr_series(count=3, seed=2)
    assert len(case.datasets) == 3 and case.ct.shape == (3, 128, 128) == case.body.shape
    assert {ds.Modality for ds in case.datasets} == {"MR"}
    assert "derived" in case.source and "held out" in case.source
    again = derived_mr_series(count=3, seed=2)
    assert [ds.SOPInstanceUID for ds in again.datasets] == [ds.SOPInstanceUID for ds in case.datasets]
    with pytest.raises(ValueError, match="outside"):
        derived_mr_series(first=18, count=5)
