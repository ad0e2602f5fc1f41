"""lung_nodules building blocks: targets, reorientation, peaks, LoG baseline, FROC bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ai_pipelines.lung_nodules.baseline import log_blobs, lung_mask
from ai_pipelines.lung_nodules.evaluation import ScanResult, froc, match
from ai_pipelines.lung_nodules.model import (
    Canonical,
    build_network,
    extract_detections,
    heat_target,
    resample,
    resample_window,
)
from ai_pipelines.lung_nodules.train import focal_loss
from ai_pipelines.synthetic.chest_nodules import LidcStats, chest_case


class _Fixed(LidcStats):
    """Statistics that always draw one kind of nodule."""

    def __init__(self, diameter: float, texture: str = "solid") -> None:
        super().__init__()
        self.fixed = (diameter, texture, 5, 1, 1)

    def sample(self, rng: np.random.Generator, *, subsolid_boost: float = 1.0) -> tuple[float, str, int, int, int]:
        return self.fixed  # type: ignore[return-value]


def test_heat_target_peaks_at_one_on_each_centre() -> None:
    target = heat_target((20, 30, 30), np.array([[5.2, 10.0, 10.0], [15.0, 20.4, 21.0]]), [1.5, 2.0])
    assert target.max() == 1.0
    assert target[5, 10, 10] == 1.0 and target[15, 20, 21] == 1.0
    assert target[0, 0, 0] < 1e-6 and 0.1 < target[5, 10, 12] < 1.0


@pytest.mark.parametrize("direction", [
    ((0, 0, 1), (0, 1, 0), (1, 0, 0)),      # axial
    ((0, 0, -1), (0, 1, 0), (-1, 0, 0)),    # axial, feet first and flipped
    ((0, 1, 0), (0, 0, -1), (1, 0, 0)),     # coronal
])
def test_canonical_round_trip(direction: tuple) -> None:
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    canonical = Canonical.of(direction)
    forward = canonical.forward(array)
    assert np.array_equal(canonical.backward(forward), array)
    index = np.argwhere(forward == 7)[0]
    assert np.array_equal(canonical.index_backward(index, array.shape), np.argwhere(array == 7)[0])


def test_resample_keeps_voxel_zero_and_can_go_back() -> None:
    array = np.random.default_rng(0).normal(size=(10, 12, 12)).astype(np.float32)
    fine = resample(array, (3.0, 2.0, 2.0), (1.5, 1.5, 1.5))
    assert fine.shape == (19, 15, 15) and fine[0, 0, 0] == pytest.approx(array[0, 0, 0])
    back = resample(fine, (1.5, 1.5, 1.5), (3.0, 2.0, 2.0), shape=array.shape)
    assert np.allclose(back[::1, ::3, ::3], array[::1, ::3, ::3], atol=1e-5)


def test_extract_detections_suppresses_weaker_peaks_inside_a_nodule() -> None:
    heat = heat_target((24, 40, 40), np.array([[10, 10, 10], [10, 12, 11], [18, 30, 30]]), [2.0, 2.0, 1.5])
    heat[10, 12, 11] = 0.9  # a second peak inside the first nodule
    heat[14:, 25:, 25:] *= 0.7  # a weaker nodule elsewhere, not segmented
    seg = np.zeros_like(heat)
    seg[8:13, 8:15, 8:14] = 1.0  # 5 slices, 7 x 6 voxels
    detections, labels = extract_detections(heat, seg, threshold=0.5)
    assert [round(d.probability, 2) for d in detections] == [1.0, 0.7]
    first = detections[0]
    assert first.volume_mm3 == pytest.approx(5 * 7 * 6 * 1.5**3)
    assert first.diameter_mm == pytest.approx(np.hypot(6, 5) * 1.5 + 1.5)
    assert (labels == 1).sum() == 5 * 7 * 6 and (labels == 2).any()


def test_focal_loss_is_smaller_for_a_better_heat_map() -> None:
    target = torch.from_numpy(heat_target((8, 16, 16), np.array([[4.0, 8.0, 8.0]]), [1.5]))[None, None]
    good = torch.logit(target.clamp(0.01, 0.99))
    bad = torch.full_like(target, -4.6)
    assert focal_loss(good, target) < focal_loss(bad, target)


def test_network_is_small_and_keeps_the_grid() -> None:
    network = build_network({})
    assert sum(p.numel() for p in network.parameters()) < 1_000_000  # a few MB at most
    with torch.no_grad():
        assert network(torch.zeros(1, 1, 16, 32, 32)).shape == (1, 2, 16, 32, 32)


def test_match_and_froc_bookkeeping() -> None:
    case = chest_case(1, nodules=1, shape=(24, 96, 128), spacing=(1.5, 1.5, 1.5), centre=(-60.0, 0.0, 0.0),
                      stats=_Fixed(10.0))
    centre = case.centre_indices()[0]
    result = match(case, np.array([centre + [0, 2, 0], centre + [0, 20, 0], centre]), [0.9, 0.8, 0.3])
    assert list(result.hits) == [0, -1, 0]  # 3 mm off hits, 30 mm off does not
    free = ScanResult(np.array([0.95]), np.array([-1]), 0)
    # at 0.5 FP/scan only the 0.95 false positive fits and the 0.9 hit comes after it
    assert froc([result, free], rates=(0.25, 0.5, 1.0)) == [0.0, 1.0, 1.0]


@pytest.mark.slow
def test_lung_mask_and_log_baseline_find_a_large_solid_nodule() -> None:
    # the whole chest in the field of view, as in a real scan (a lung cut by the edge is outside air)
    case = chest_case(4, nodules=1, shape=(20, 120, 176), spacing=(2.0, 2.0, 2.0), stats=_Fixed(14.0), noise_hu=15.0)
    mask = lung_mask(case.values, case.grid.spacing)
    assert (mask & case.lung).sum() > 0.95 * case.lung.sum()
    assert mask[case.labels > 0].mean() > 0.9  # nodules count as lung, also on the pleura
    blobs = log_blobs(case.values, case.grid.spacing, mask=mask)
    result = match(case, np.array([b.index for b in blobs]), [b.score for b in blobs])
    assert (result.hits == 0).any()


def test_resample_window_equals_the_whole_volume_resample() -> None:
    rng = np.random.default_rng(4)
    for _ in range(10):
        shape = tuple(int(n) for n in rng.integers(20, 60, 3))
        array = np.zeros(shape, np.float32)
        low = [int(rng.integers(0, n - 5)) for n in shape]
        box = tuple(slice(lo, min(lo + int(rng.integers(3, 15)), n)) for lo, n in zip(low, shape, strict=True))
        array[box] = rng.random(tuple(b.stop - b.start for b in box))
        target = tuple(float(v) for v in rng.uniform(0.5, 3.0, 3))
        whole = resample(array, (1.5, 1.5, 1.5), target)
        window = resample_window(array, (1.5, 1.5, 1.5), target, shape=whole.shape, box=box)
        np.testing.assert_allclose(window, whole, atol=1e-6)
