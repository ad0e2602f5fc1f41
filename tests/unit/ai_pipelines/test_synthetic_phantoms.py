"""Phantoms: ground truth on the series' grid, deterministic, usable by the writers."""

from __future__ import annotations

import numpy as np
from pydicom.sr.codedict import codes

from ai_pipelines.base import SeriesInput
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.synthetic.phantoms import BRAIN_LABELS, brain_mr_with_tumour, chest_ct_with_nodules
from ai_pipelines.volume import load_volume
from ai_pipelines.writers import Segment, write_seg


def test_chest_nodules_sit_in_the_lungs_with_their_density() -> None:
    phantom = chest_ct_with_nodules(seed=1, count=3)
    volume = load_volume(phantom.datasets)
    assert phantom.labels.shape == volume.shape
    assert set(np.unique(phantom.labels)) == {0, 1, 2, 3}
    for number, nodule in enumerate(phantom.nodules, start=1):
        assert 4.0 <= nodule.diameter_mm <= 20.0
        inside = volume.array[phantom.labels == number].mean()
        assert (inside > -100) if nodule.solid else (-700 < inside < -100)
        centre = np.rint(volume.patient_to_index(nodule.centre)).astype(int)
        assert phantom.labels[tuple(centre)] == number  # truth is where the nodule is
    ring = (phantom.labels == 0) & (np.abs(volume.array + 850) < 100)
    assert ring.sum() > 0.1 * volume.array.size  # plenty of lung around them


def test_phantoms_are_deterministic_and_can_be_nodule_free() -> None:
    first, again = chest_ct_with_nodules(seed=5), chest_ct_with_nodules(seed=5)
    assert first.nodules == again.nodules
    assert np.array_equal(first.labels, again.labels)
    assert first.datasets[3].PixelData == again.datasets[3].PixelData
    empty = chest_ct_with_nodules(seed=5, count=0)
    assert empty.nodules == () and not empty.labels.any()


def test_brain_tumour_has_core_rim_and_oedema() -> None:
    phantom = brain_mr_with_tumour(seed=2)
    volume = load_volume(phantom.datasets)
    means = {label: volume.array[phantom.labels == label].mean() for label in BRAIN_LABELS}
    assert means[3] > means[2] > means[1]  # enhancing rim bright, oedema grey, necrosis dark
    sizes = {label: int((phantom.labels == label).sum()) for label in BRAIN_LABELS}
    assert all(size > 0 for size in sizes.values())
    assert volume.modality == "MR" and phantom.datasets[0].BodyPartExamined == "BRAIN"


def test_phantom_truth_writes_as_a_seg() -> None:
    phantom = brain_mr_with_tumour(seed=3, shape=(12, 48, 48), spacing=(5.0, 4.0, 4.0))
    series = SeriesInput(phantom.datasets)
    volume = load_volume(series)
    segments = [Segment(name, codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm,
                        phantom.labels == label) for label, name in BRAIN_LABELS.items()]
    seg = write_seg(series, volume, segments, algorithm=AlgorithmInfo("truth", "1"))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == list(BRAIN_LABELS.values())
