"""brain_tumour_seg without the network: synthetic cases, contrast detection, parameters, baseline, metrics, NIfTI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from ai_pipelines.base import SeriesInput
from ai_pipelines.brain_tumour_seg import baseline, model
from ai_pipelines.brain_tumour_seg.contrast import BrainTumourParameters, detect_contrast
from ai_pipelines.brain_tumour_seg.nifti import nifti_series, read_nifti
from ai_pipelines.synthetic.brain_tumours import CONTRASTS, case_series, make_case, regions
from ai_pipelines.volume import load_volume


@pytest.fixture(scope="module")
def case():  # type: ignore[no-untyped-def]
    return make_case(2, spacing=(2.0, 2.0, 2.0))  # a case with all three labels


def test_case_shapes_labels_and_ranges(case) -> None:  # type: ignore[no-untyped-def]
    assert set(case.images) == set(CONTRASTS)
    for image in case.images.values():
        assert image.shape == case.labels.shape and image.dtype == np.float32
        assert image.min() >= 0  # magnitude images (Rician)
        assert 100 < np.percentile(image, 99) < 4095  # fits the 12-bit series make_series writes
    assert case.labels.dtype == np.uint8
    assert set(np.unique(case.labels)) <= {0, 1, 2, 3}
    assert case.spacing == (2.0, 2.0, 2.0) and case.template == "mni" and "MNI" in case.source
    wt, tc, et = regions(case.labels)
    assert tc.sum() > 0 and (wt >= tc).all() and (tc >= et).all()  # nested like BraTS


def test_tumour_is_visible_in_each_contrast(case) -> None:  # type: ignore[no-untyped-def]
    labels = case.labels
    brain = case.images["flair"] > 0.2 * np.percentile(case.images["flair"], 99)
    flair, t1c = case.images["flair"], case.images["t1c"]
    healthy = brain & (labels == 0)
    assert np.median(flair[labels == 2]) > 1.2 * np.median(flair[healthy])  # oedema bright on FLAIR
    if (labels == 3).sum() > 20:
        assert np.median(t1c[labels == 3]) > 1.2 * np.median(t1c[healthy])  # enhancing rim bright on T1c
    if (labels == 1).sum() > 20:
        assert np.median(t1c[labels == 1]) < np.median(t1c[labels == 3])  # necrosis dark inside it


def test_cases_are_seeded_and_differ() -> None:
    a, b = make_case(5, spacing=(4.0, 4.0, 4.0)), make_case(5, spacing=(4.0, 4.0, 4.0))
    c = make_case(6, spacing=(4.0, 4.0, 4.0), template=a.template)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.images["t1c"], b.images["t1c"])
    assert c.images["flair"].shape == a.images["flair"].shape  # same template, same grid ...
    assert not np.array_equal(a.images["flair"], c.images["flair"])  # ... another warp, tumour and noise


def test_make_case_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="template"):
        make_case(0, template="atlas")
    with pytest.raises(ValueError, match="spacing"):
        make_case(0, spacing=(0.0, 1.0, 1.0))


def test_case_series_keeps_labels_in_place(case) -> None:  # type: ignore[no-untyped-def]
    volume = load_volume(SeriesInput(case_series(case, "flair", seed=1)))
    assert volume.shape == case.labels.shape and volume.spacing == (2.0, 2.0, 2.0)
    np.testing.assert_allclose(volume.array, np.clip(np.rint(case.images["flair"]), 0, 4095))
    # slices advance feet -> head, rows anterior -> posterior, columns right -> left (LPS)
    assert volume.direction == ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))


@pytest.mark.parametrize(("description", "agent", "expected"), [
    ("AX T2 FLAIR", "", "flair"), ("t2_tirm_tra_dark-fluid", "", "flair"), ("Sag 3D FLAIR CUBE", "", "flair"),
    ("AX T1 post Gd", "", "t1c"), ("T1 MPRAGE +C", "", "t1c"), ("t1_se_tra", "Gadovist", "t1c"),
    ("T1c", "", "t1c"), ("AX T1 pre", "", None), ("t1_mprage_sag", "", None), ("AX T2 TSE", "", None),
    ("DWI b1000", "", None), ("", "", None), ("T1 FLASH", "", None),
])
def test_detect_contrast(description: str, agent: str, expected: str | None) -> None:
    ds = Dataset()
    ds.SeriesDescription = description
    if agent:
        ds.ContrastBolusAgent = agent
    assert detect_contrast(ds) == expected


def test_parameters_are_checked() -> None:
    assert BrainTumourParameters.from_mapping({"threshold": "0.4"}).threshold == 0.4
    for bad, match in (({"contrast": "t2"}, "contrast"), ({"threshold": 1.5}, "threshold"),
                       ({"min_volume_mm3": True}, "min_volume"), ({"treshold": 0.5}, "unknown")):
        with pytest.raises(ValueError, match=match):
            BrainTumourParameters.from_mapping(bad)


def test_dice_and_hd95() -> None:
    a = np.zeros((20, 20, 20), dtype=bool)
    a[5:15, 5:15, 5:15] = True
    b = np.roll(a, 2, axis=2)
    assert baseline.dice(a, a) == 1.0 and baseline.dice(a, ~a) == 0.0
    assert baseline.dice(a, b) == pytest.approx(0.8)
    assert baseline.dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert baseline.hd95(a, b, (1.0, 1.0, 1.0)) == pytest.approx(2.0)
    assert baseline.hd95(a, b, (1.0, 1.0, 3.0)) == pytest.approx(6.0)  # spacing counts
    assert np.isnan(baseline.hd95(a, np.zeros_like(a), (1.0, 1.0, 1.0)))


def test_baseline_finds_the_tumour(case) -> None:  # type: ignore[no-untyped-def]
    wt, tc, _ = regions(case.labels)
    assert baseline.dice(baseline.segment(case.images["flair"], case.spacing, "flair")["WT"], wt) > 0.5
    masks = baseline.segment(case.images["t1c"], case.spacing, "t1c")
    assert set(masks) == {"TC", "ET"} and (masks["TC"] >= masks["ET"]).all()
    assert baseline.dice(masks["TC"], tc) > 0.5


def test_work_grid_round_trip() -> None:
    rng = np.random.default_rng(0)
    array = rng.random((20, 30, 40)).astype(np.float32)
    work, factors = model.to_work_grid(array, (4.0, 1.0, 2.0))
    assert work.shape == (39, 15, 40) and factors == (0.5, 2.0, 1.0)
    back = model.resample(work, array.shape, [1 / f for f in factors])
    assert back.shape == array.shape
    z = model.normalise(array * 300 + 50)
    head = array * 300 + 50 > 0.15 * np.percentile(array * 300 + 50, 99)
    assert abs(z[head].mean()) < 1e-3 and z[head].std() == pytest.approx(1.0, abs=1e-3)


def test_nifti_series_geometry(tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    data = np.zeros((30, 40, 20), dtype=np.float32)  # i: x, j: y, k: z in LAS (a radiological file)
    data[2, 5, 7] = 1000.0
    affine = np.diag([-2.0, 1.5, 3.0, 1.0])
    affine[:3, 3] = (30.0, -20.0, -10.0)
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    world_ras = affine @ np.array([2, 5, 7, 1.0])
    read = read_nifti(path)
    assert read.spacing == (3.0, 1.5, 2.0) and read.values.shape == (20, 40, 30)
    volume = load_volume(SeriesInput(nifti_series(path, series_description="FLAIR")))
    k, j, i = np.argwhere(volume.array == 1000.0)[0]
    lps = volume.index_to_patient((k, j, i))
    np.testing.assert_allclose(lps, (-world_ras[0], -world_ras[1], world_ras[2]), atol=1e-4)
