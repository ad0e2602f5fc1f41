"""LungNodules: chest CT -> nodule candidates as SR TID 1500, a SEG, a key image and saliency images.

A small MONAI 3D UNet (see :mod:`~ai_pipelines.lung_nodules.model`) turns the CT (HU,
reoriented to axial, resampled to 1.5 mm) into a nodule heat map and a segmentation.
Local maxima of the heat map at or above the threshold are the nodules; each gets its centre,
its long-axis (axial) diameter and volume from its segmentation, and the heat-map value,
calibrated on held-apart synthetic scans (:mod:`~ai_pipelines.lung_nodules.calibration`),
as its probability. Outputs:

- a Comprehensive 3D SR (TID 1500): one measurement group per nodule with its centre as
  SCOORD3D, diameter, volume, probability and finding site "Lung" (or "Nodule: absent");
- a BINARY SEG with one segment per nodule (tracking UIDs shared with the SR);
- a Secondary Capture of the key slice with every nodule circled and outlined;
- per nodule (up to ``saliency_images``), a Secondary Capture of its slice with the
  input-gradient saliency of its heat-map peak blended in as a heat map, so that a
  reader sees which voxels drove the detection.

Parameters (``AlgorithmInfo.parameters``; unknown names are refused):

``threshold`` (float, 0.05-0.99, default: the weights' operating threshold)
    Lowest calibrated probability reported. Left out, the threshold chosen with the
    calibration (1 false positive per scan on the calibration scans; 0.5 for weights
    calibrated without one). Lower finds more nodules and more false positives.
``max_findings`` (int, 1-50, default 20)
    Most nodules reported (highest probability first).
``saliency_images`` (int, 0-10, default 3)
    Saliency Secondary Captures, one per nodule, strongest first.

Refused: a modality other than CT, results and the node's own outputs, slices more than
3 mm apart, pixels larger than 2.5 mm, and stacks shorter than 30 mm.

Bench: :meth:`LungNodules.bare_forward` re-runs the bare network (sliding window) on the
input of the last :meth:`~LungNodules.run` (normalised, on the 1.5 mm grid), without
decoding, resampling, peaks, saliency or writing; :meth:`LungNodules.forward_only` does the
same on an input given to it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from ai_pipelines import writers
from ai_pipelines.base import Finding, InputSpec, OutputKind, PipelineInputError, PipelineResult, SeriesInput
from ai_pipelines.lung_nodules.calibration import THRESHOLD_RANGE, Calibration
from ai_pipelines.lung_nodules.detector import detect, predict, saliency_on_source
from ai_pipelines.lung_nodules.model import build_network
from ai_pipelines.montage.pipeline import refuse_results
from ai_pipelines.nn.pipeline import TorchPipeline
from ai_pipelines.provenance import AlgorithmInfo, ParameterValue, parameters_from_mapping
from ai_pipelines.volume import Volume, load_volume

__all__ = ["CT_CHEST", "LungNodules", "NoduleParameters"]

#: Procedure reported (CID 100): LOINC "CT Chest".
CT_CHEST = Code("24627-2", "LN", "CT Chest")
MAX_SLICE_GAP_MM = 3.0
MAX_PIXEL_MM = 2.5
MIN_EXTENT_MM = 30.0


@dataclass(frozen=True, slots=True)
class NoduleParameters:
    """The pipeline's parameters, checked when built (see the module docstring).

    Raises
    ------
    ValueError
        Naming the parameter and its value when it is out of range or not a number.
    """

    threshold: float | None = None  # None: the weights' operating threshold
    max_findings: int = 20
    saliency_images: int = 3

    def __post_init__(self) -> None:
        if self.threshold is not None:
            threshold = _number("threshold", self.threshold)
            low, high = THRESHOLD_RANGE
            if not low <= threshold <= high:
                raise ValueError(f"threshold={self.threshold!r}; expected {low:g}-{high:g}")
            object.__setattr__(self, "threshold", threshold)
        for name, high, low in (("max_findings", 50, 1), ("saliency_images", 10, 0)):
            value = _number(name, getattr(self, name))
            if not value.is_integer() or not low <= value <= high:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected a whole number {low}-{high}")
            object.__setattr__(self, name, int(value))

    @classmethod
    def from_mapping(cls, parameters: Mapping[str, ParameterValue]) -> NoduleParameters:
        """Build from a rule's parameters; unknown names raise ValueError."""
        return parameters_from_mapping(cls, parameters)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be a number")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} must be a number") from None
    if not np.isfinite(number):
        raise ValueError(f"{name}={value!r} must be finite")
    return number


def _check_geometry(volume: Volume) -> None:
    gap, rows, columns = volume.spacing
    if gap > MAX_SLICE_GAP_MM:
        raise PipelineInputError(f"slices {gap:g} mm apart; nodule detection needs <= {MAX_SLICE_GAP_MM:g} mm")
    if max(rows, columns) > MAX_PIXEL_MM:
        raise PipelineInputError(f"pixels {rows:g} x {columns:g} mm; nodule detection needs <= {MAX_PIXEL_MM:g} mm")
    extent = gap * (volume.shape[0] - 1)
    if extent < MIN_EXTENT_MM:
        raise PipelineInputError(f"the stack covers {extent:g} mm; nodule detection needs >= {MIN_EXTENT_MM:g} mm")


class LungNodules(TorchPipeline):
    """Lung nodule detection on chest CT with a heat-map UNet (see the module docstring).

    Parameters
    ----------
    weights : Path or None
        Checkpoint (``ai_pipelines/weights/lung_nodules.pt``) or MONAI bundle.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    verify_weights : bool, optional
        Refuse weights the manifest does not list (default True).
    """

    name: ClassVar[str] = "lung_nodules"
    version: ClassVar[str] = "1.0.0"
    accepts: ClassVar[InputSpec] = InputSpec(modalities=frozenset({"CT"}), min_slices=10)
    produces: ClassVar[frozenset[OutputKind]] = frozenset({OutputKind.SR, OutputKind.SEG, OutputKind.SC})

    @classmethod
    def build_network(cls, overrides: Mapping[str, Any]) -> torch.nn.Module:
        """The heat-map UNet (:func:`~ai_pipelines.lung_nodules.model.build_network`)."""
        return build_network(overrides)

    def forward_only(self, image: np.ndarray) -> np.ndarray:
        """The bare model: sliding-window network over a normalised ``(z, y, x)`` image on the 1.5 mm grid.

        Returns the heat-map and segmentation probabilities stacked as ``(2, z, y, x)``.
        """
        loaded = self.loaded()
        heat, seg = predict(loaded.network, np.asarray(image, dtype=np.float32), self.torch_device,
                            calibration=Calibration.from_meta(loaded.meta))
        return np.stack([heat, seg])

    def run(self, series: SeriesInput, *, algorithm: AlgorithmInfo) -> PipelineResult:
        """Detect nodules and write SR, SEG and Secondary Captures.

        Parameters
        ----------
        series : SeriesInput
            The instances of one chest CT series.
        algorithm : AlgorithmInfo
            Provenance for the outputs; its ``parameters`` are the pipeline's.

        Returns
        -------
        PipelineResult
            SR, SEG (when a nodule is found), key-image SC and saliency SCs; one Finding per nodule.

        Raises
        ------
        PipelineInputError
            For invalid parameters, a non-CT or result series, unsuitable geometry, or
            weights that are missing or not vouched for (WeightsError).
        """
        try:
            parameters = NoduleParameters.from_mapping(algorithm.parameters)
        except (TypeError, ValueError) as exc:
            raise PipelineInputError(f"invalid lung_nodules parameters: {exc}") from exc
        self.accepts.check(series)
        refuse_results(series)
        loaded = self.loaded()
        network = loaded.network
        started = time.perf_counter()
        volume = load_volume(series)
        _check_geometry(volume)
        decoded = time.perf_counter()
        calibration = Calibration.from_meta(loaded.meta)
        threshold = calibration.operating_threshold if parameters.threshold is None else parameters.threshold
        found = detect(network, volume.array, volume.spacing, volume.direction, device=self.torch_device,
                       threshold=threshold, calibration=calibration, max_count=parameters.max_findings)
        post = time.perf_counter()
        self.remember_forward_input(found.image)
        findings, segments = self._findings(volume, found)
        saliency = [saliency_on_source(network, found, n, volume.spacing, self.torch_device)
                    for n in range(min(parameters.saliency_images, len(findings)))]
        saliency_done = time.perf_counter()
        datasets = self._write(series, volume, algorithm, findings, segments, saliency)
        written = time.perf_counter()
        self.timings = {
            "decode": decoded - started,
            "preprocess": found.timings["preprocess"],
            "model": found.timings["model"],
            "postprocess": found.timings["postprocess"] + (saliency_done - post),
            "write": written - saliency_done,
        }
        return PipelineResult(datasets=tuple(datasets), findings=tuple(findings))

    @staticmethod
    def _findings(volume: Volume, found: Any) -> tuple[list[Finding], list[writers.Segment]]:
        findings, segments = [], []
        for n, (detection, centre) in enumerate(zip(found.detections, found.centres, strict=True), start=1):
            uid, label = generate_uid(), f"nodule {n}"
            mask = found.labels == n
            if not mask.any():  # a tiny extent lost on a coarser source grid: keep its peak voxel
                k, j, i = (int(np.clip(round(v), 0, s - 1)) for v, s in zip(centre, volume.shape, strict=True))
                mask[k, j, i] = True
            findings.append(Finding(
                tracking_identifier=label, tracking_uid=uid, finding_type=codes.SCT.Nodule,
                centre=tuple(float(v) for v in volume.index_to_patient(centre)),  # type: ignore[arg-type]
                volume_mm3=round(detection.volume_mm3, 1), diameter_mm=round(detection.diameter_mm, 1),
                probability=round(detection.probability, 3), finding_site=codes.SCT.Lung, segment_number=n,
            ))
            segments.append(writers.Segment(
                label=label, category=codes.SCT.MorphologicallyAbnormalStructure, property_type=codes.SCT.Nodule,
                mask=mask, tracking_uid=uid, tracking_identifier=label, anatomic_region=codes.SCT.Lung,
            ))
        return findings, segments

    @staticmethod
    def _write(series: SeriesInput, volume: Volume, algorithm: AlgorithmInfo, findings: list[Finding],
               segments: list[writers.Segment], saliency: list[np.ndarray]) -> list[Any]:
        source_number = series.datasets[0].get("SeriesNumber")
        seg = writers.write_seg(series, volume, segments, algorithm=algorithm,
                                series_description="AI lung nodules") if segments else None
        sr = writers.write_tid1500_sr(series, volume, findings, algorithm=algorithm, segmentation=seg,
                                      looked_for=codes.SCT.Nodule, procedure_reported=CT_CHEST,
                                      series_description="AI lung nodules report")
        key = writers.write_sc(series, volume, algorithm=algorithm, segments=segments, findings=findings,
                               window=(-600.0, 1500.0), series_description="AI lung nodules key image")
        outputs = [ds for ds in (sr, seg, key) if ds is not None]
        saliency_series = generate_uid()
        for n, heat in enumerate(saliency):
            k = int(np.clip(round(float(volume.patient_to_index(findings[n].centre)[0])), 0, volume.shape[0] - 1))
            outputs.append(writers.write_sc(
                series, volume, algorithm=algorithm, findings=[findings[n]], heatmap=heat, slice_index=k,
                window=(-600.0, 1500.0), series_instance_uid=saliency_series, instance_number=n + 1,
                series_number=writers.output_series_number(source_number, OutputKind.SC, 1),
                series_description="AI lung nodules saliency",
            ))
        return outputs
