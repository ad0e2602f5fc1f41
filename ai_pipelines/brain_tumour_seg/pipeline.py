"""BrainTumourSegmentation: one brain MR series (FLAIR or T1 post-contrast) -> SEG, TID 1500 SR and a key image.

The series is stacked with :func:`~ai_pipelines.volume.load_volume`, resampled to the 2 mm
working grid, z-scored over the head and segmented by a small MONAI UNet with sliding-window
inference (:func:`~ai_pipelines.nn.inference.predict_volume`: AMP on CUDA, float32 on CPU).
Probabilities go back to the source grid, are thresholded, and components smaller than
``min_volume_mm3`` are dropped. Which regions are written depends on the contrast, because
one series shows only some of them:

- FLAIR: the whole tumour (WT: tumour and oedema);
- T1 post-contrast: the tumour core (TC), its enhancing part (ET) and the necrotic core (TC
  without ET).

Outputs: a BINARY SEG (one segment per region), a Comprehensive 3D SR (TID 1500) with the
volume and centre of each non-empty region (tracking UIDs shared with the SEG segments), and
an RGB Secondary Capture of the slice with the largest segmented area, regions outlined.

Parameters (``AlgorithmInfo.parameters``; unknown names are refused): ``contrast`` (``auto``
reads SeriesDescription, ProtocolName, SequenceName and ContrastBolusAgent; ``flair``;
``t1c``), ``threshold`` (0.5) and ``min_volume_mm3`` (100).

For the bench, :meth:`BrainTumourSegmentation.forward_only` times the bare network on an
already pre-processed working-grid array, and :meth:`BrainTumourSegmentation.bare_forward`
does so on the input of the last :meth:`run`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid
from scipy import ndimage

from ai_pipelines import writers
from ai_pipelines.base import (
    Finding,
    InputSpec,
    OutputKind,
    PipelineInputError,
    PipelineResult,
    SeriesInput,
)
from ai_pipelines.brain_tumour_seg import model
from ai_pipelines.brain_tumour_seg.contrast import BrainTumourParameters, detect_contrast
from ai_pipelines.nn.inference import predict_volume
from ai_pipelines.nn.pipeline import TorchPipeline
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.volume import Volume, load_volume
from ai_pipelines.writers import Segment

__all__ = ["MIN_EXTENT_MM", "BrainTumourSegmentation", "RegionCode"]

#: The smallest field of view (mm, along each axis) in which a brain tumour can be judged.
MIN_EXTENT_MM = 60.0

_CATEGORY = codes.SCT.MorphologicallyAbnormalStructure


class RegionCode:
    """Label, SEG property type and SR finding type of each region written."""

    LABELS: ClassVar[Mapping[str, str]] = {
        "WT": "whole tumour (WT)", "TC": "tumour core (TC)", "ET": "enhancing tumour (ET)",
        "NCR": "necrotic core (TC without ET)",
    }
    TYPES: ClassVar[Mapping[str, Code]] = {
        "WT": codes.SCT.Neoplasm, "TC": codes.SCT.Neoplasm, "ET": codes.SCT.Neoplasm, "NCR": codes.SCT.Necrosis,
    }


def _refuse_own_output(series: SeriesInput) -> None:
    for ds in series.datasets:
        equipment = [ds.get("Manufacturer")] + [
            item.get("Manufacturer") for item in ds.get("ContributingEquipmentSequence") or []]
        if writers.MANUFACTURER in equipment:
            raise PipelineInputError(
                f"instance {ds.SOPInstanceUID} was made by {writers.MANUFACTURER}; the node's own "
                "outputs are not segmented again"
            )
        if not any(keyword in ds for keyword in ("PixelData", "FloatPixelData")):
            raise PipelineInputError(f"instance {ds.SOPInstanceUID} has no pixel data")


def _check_extent(volume: Volume) -> None:
    extent = [n * s for n, s in zip(volume.shape, volume.spacing, strict=True)]
    if min(extent) < MIN_EXTENT_MM:
        axes = " x ".join(f"{e:.0f}" for e in extent)
        raise PipelineInputError(
            f"field of view {axes} mm (slices x rows x columns); a brain volume needs at least "
            f"{MIN_EXTENT_MM:.0f} mm along each axis"
        )


def _clean(mask: np.ndarray, min_voxels: float) -> np.ndarray:
    """Drop connected components smaller than ``min_voxels``."""
    if not mask.any() or min_voxels <= 1:
        return mask
    labelled, count = ndimage.label(mask)
    sizes = np.bincount(labelled.ravel(), minlength=count + 1)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labelled]


class BrainTumourSegmentation(TorchPipeline):
    """Glioma regions on one brain MR series (FLAIR: WT; T1 post-contrast: TC, ET, necrotic core).

    Parameters
    ----------
    weights : Path
        Checkpoint (``ai_pipelines/weights/brain_tumour_seg.pt``) or MONAI bundle.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    verify_weights : bool, optional
        Refuse weights the manifest does not list (default True).
    """

    name: ClassVar[str] = "brain_tumour_seg"
    version: ClassVar[str] = "1.0.0"
    accepts: ClassVar[InputSpec] = InputSpec(modalities=frozenset({"MR"}), min_slices=16)
    produces: ClassVar[frozenset[OutputKind]] = frozenset({OutputKind.SEG, OutputKind.SR, OutputKind.SC})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timings: dict[str, float] = {}

    @classmethod
    def build_network(cls, overrides: Mapping[str, Any]) -> torch.nn.Module:
        """The default UNet of :mod:`~ai_pipelines.brain_tumour_seg.model`, with checkpoint overrides."""
        return model.build_network(overrides)

    def forward_only(self, work_array: np.ndarray) -> np.ndarray:
        """The bare network (sliding windows) on a pre-processed working-grid array.

        Parameters
        ----------
        work_array : numpy.ndarray
            ``(z, y, x)`` float32 on the 2 mm grid, normalised by :func:`model.normalise`.

        Returns
        -------
        numpy.ndarray
            ``(3, z, y, x)`` logits (WT, TC, ET).
        """
        return predict_volume(self.loaded().network, work_array[None], roi_size=model.ROI_SIZE,
                              device=self.torch_device)

    def segment(
        self, array: np.ndarray, spacing: tuple[float, float, float], contrast: str,
        parameters: BrainTumourParameters | None = None,
    ) -> dict[str, np.ndarray]:
        """Masks of the regions ``contrast`` shows, on the grid of ``array`` (what run() writes).

        Parameters
        ----------
        array : numpy.ndarray
            ``(z, y, x)`` MR intensities.
        spacing : tuple[float, float, float]
            Voxel size (z, y, x) in mm.
        contrast : str
            ``"flair"`` or ``"t1c"``.
        parameters : BrainTumourParameters or None, optional
            Threshold and smallest component; defaults when None.

        Returns
        -------
        dict[str, numpy.ndarray]
            Region name (``WT``; or ``TC``, ``ET``, ``NCR``) -> boolean mask.
        """
        parameters = parameters or BrainTumourParameters()
        began = time.perf_counter()
        work, factors = model.to_work_grid(array, spacing)
        normalised = model.normalise(work)
        self.remember_forward_input(normalised)
        prepared = time.perf_counter()
        logits = self.forward_only(normalised)
        predicted = time.perf_counter()
        probabilities = 1.0 / (1.0 + np.exp(-logits))
        back = [1.0 / f for f in factors]
        min_voxels = parameters.min_volume_mm3 / float(np.prod(spacing))
        masks = {}
        for name in model.REGIONS_SHOWN[contrast]:
            channel = model.REGION_NAMES.index(name)
            probability = model.resample(probabilities[channel], array.shape, back)
            masks[name] = _clean(probability > parameters.threshold, min_voxels)
        if contrast == "t1c":
            masks["TC"] = masks["TC"] | masks["ET"]  # the enhancing tumour is part of the core
            masks["NCR"] = masks["TC"] & ~masks["ET"]
        self.timings.update(preprocess=prepared - began, model=predicted - prepared,
                            postprocess=time.perf_counter() - predicted)
        return masks

    def run(self, series: SeriesInput, *, algorithm: AlgorithmInfo) -> PipelineResult:
        """Segment the tumour of one brain MR series.

        Parameters
        ----------
        series : SeriesInput
            The instances of one FLAIR or T1 post-contrast series, in any order.
        algorithm : AlgorithmInfo
            Provenance for the outputs; its ``parameters`` are the pipeline's (see the module).

        Returns
        -------
        PipelineResult
            SEG, SR and SC, and one finding per non-empty region.

        Raises
        ------
        PipelineInputError
            For an invalid parameter, a modality other than MR, fewer than 16 slices, a field
            of view under 60 mm, a contrast that is neither FLAIR nor T1 post-contrast, the
            node's own output, a stack that is not a regular grid, or weights the manifest does
            not vouch for (:class:`~ai_pipelines.nn.weights.WeightsError`).
        """
        try:
            parameters = BrainTumourParameters.from_mapping(algorithm.parameters)
        except (TypeError, ValueError) as exc:
            raise PipelineInputError(f"invalid brain_tumour_seg parameters: {exc}") from exc
        self.accepts.check(series)
        _refuse_own_output(series)
        contrast = parameters.contrast
        if contrast == "auto":
            detected = detect_contrast(series.datasets[0])
            if detected is None:
                described = series.datasets[0].get("SeriesDescription") or ""
                raise PipelineInputError(
                    f"cannot tell FLAIR or T1 post-contrast from SeriesDescription {str(described)!r} "
                    "(nor ProtocolName, SequenceName, ContrastBolusAgent); this pipeline reads one of "
                    "those two: route only such series, or set the parameter contrast: flair|t1c"
                )
            contrast = detected
        began = time.perf_counter()
        self.timings = {}
        volume = load_volume(series)
        _check_extent(volume)
        self.loaded()  # weights are checked (WeightsError) before any work on the pixels
        self.timings["decode"] = time.perf_counter() - began
        masks = self.segment(volume.array, volume.spacing, contrast, parameters)
        written = time.perf_counter()
        datasets, findings = self._write(series, volume, masks, contrast, algorithm)
        self.timings["write"] = time.perf_counter() - written
        return PipelineResult(datasets=datasets, findings=findings)

    def _write(
        self, series: SeriesInput, volume: Volume, masks: Mapping[str, np.ndarray], contrast: str,
        algorithm: AlgorithmInfo,
    ) -> tuple[tuple[Dataset, ...], tuple[Finding, ...]]:
        voxel_mm3 = float(np.prod(volume.spacing))
        segments, findings = [], []
        for number, (name, mask) in enumerate(masks.items(), start=1):
            uid = generate_uid()
            label = RegionCode.LABELS[name]
            segments.append(Segment(
                label=label, category=_CATEGORY, property_type=RegionCode.TYPES[name], mask=mask,
                tracking_uid=uid, tracking_identifier=label, anatomic_region=codes.SCT.Brain,
            ))
            if mask.any():
                centre = volume.index_to_patient(np.argwhere(mask).mean(axis=0))
                findings.append(Finding(
                    tracking_identifier=label, tracking_uid=uid, finding_type=RegionCode.TYPES[name],
                    centre=(float(centre[0]), float(centre[1]), float(centre[2])),
                    volume_mm3=float(mask.sum()) * voxel_mm3, finding_site=codes.SCT.Brain,
                    segment_number=number,
                ))
        shown = "FLAIR: whole tumour" if contrast == "flair" else "T1c: tumour core, enhancing, necrosis"
        seg = writers.write_seg(series, volume, segments, algorithm=algorithm,
                                series_description=f"AI brain tumour SEG ({shown})"[:64])
        sr = writers.write_tid1500_sr(series, volume, findings, algorithm=algorithm, segmentation=seg,
                                      looked_for=codes.SCT.Neoplasm,
                                      series_description="AI brain tumour volumes")
        sc = writers.write_sc(series, volume, algorithm=algorithm, segments=segments,
                              series_description="AI brain tumour key image")
        return (seg, sr, sc), tuple(findings)
