"""From a CT array in HU to nodule detections on its own grid: pre-process, network, peaks, extents.

Shared by the pipeline (which adds DICOM around it) and the evaluation (which feeds it
synthetic arrays directly). Timings of each stage are returned for the bench.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ai_pipelines.lung_nodules.calibration import Calibration
from ai_pipelines.lung_nodules.model import (
    ROI,
    SPACING,
    Canonical,
    Detection,
    extract_detections,
    normalise,
    resample,
    resample_window,
    saliency_map,
    saliency_window,
)
from ai_pipelines.nn.inference import predict_volume

__all__ = ["NoduleDetections", "detect", "network_input", "predict", "saliency_on_source"]


@dataclass(frozen=True, slots=True, eq=False)
class NoduleDetections:
    """Detections of one volume, on the network grid and mapped back to the source grid.

    Parameters
    ----------
    detections : list[Detection]
        By falling probability, on the canonical network grid.
    centres : numpy.ndarray
        ``(N, 3)`` fractional (k, j, i) indices of the peaks on the source grid.
    labels : numpy.ndarray
        int32 on the source grid: ``n + 1`` where detection ``n`` extends, else 0.
    image : numpy.ndarray
        The normalised network input (canonical grid), for saliency.
    canonical : Canonical
        Source axes -> network axes.
    timings : dict[str, float]
        Seconds for ``preprocess``, ``model`` and ``postprocess``.
    """

    detections: list[Detection]
    centres: np.ndarray
    labels: np.ndarray
    image: np.ndarray
    canonical: Canonical
    timings: dict[str, float] = field(default_factory=dict)


def network_input(hu: np.ndarray, spacing: Sequence[float],
                  direction: Sequence[Sequence[float]]) -> tuple[np.ndarray, Canonical]:
    """Reorient to (S, P, L), resample to :data:`SPACING` and normalise; also return the reorientation."""
    canonical = Canonical.of(direction)
    array = canonical.forward(np.asarray(hu, dtype=np.float32))
    array = resample(array, canonical.spacing(spacing), SPACING, order=1)
    return normalise(array), canonical


def predict(network: torch.nn.Module, image: np.ndarray, device: torch.device, *,
            calibration: Calibration) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated heat-map and segmentation probabilities of a normalised image (sliding window, MONAI).

    A slab thinner than a window is padded with its edge slices (``replicate``): padding with
    air made the mediastinum of a 40 mm slab look like one large nodule.
    """
    logits = predict_volume(network, image[None], roi_size=ROI, device=device, overlap=0.25,
                            padding_mode="replicate").astype(np.float64)
    logits[0] = calibration.logits(logits[0])
    probabilities = 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))
    return probabilities[0].astype(np.float32), probabilities[1].astype(np.float32)


def detect(
    network: torch.nn.Module,
    hu: np.ndarray,
    spacing: Sequence[float],
    direction: Sequence[Sequence[float]] = ((0, 0, 1), (0, 1, 0), (1, 0, 0)),
    *,
    device: torch.device,
    threshold: float,
    calibration: Calibration,
    max_count: int = 50,
) -> NoduleDetections:
    """Find nodules in a CT volume.

    Parameters
    ----------
    network : torch.nn.Module
        The lung nodule network in eval mode on ``device``.
    hu : numpy.ndarray
        ``(z, y, x)`` HU.
    spacing : Sequence[float]
        Voxel size (z, y, x) in mm.
    direction : Sequence[Sequence[float]], optional
        Unit vectors of the z, y, x axes in LPS (axial by default).
    device : torch.device
        Where the network runs.
    threshold : float
        Lowest peak probability reported (calibrated).
    calibration : Calibration
        Maps the heat logits to probabilities (the checkpoint's; ``Calibration()`` for raw values).
    max_count : int, optional
        Most detections.

    Returns
    -------
    NoduleDetections
        Detections with their source-grid centres and extents.
    """
    started = time.perf_counter()
    image, canonical = network_input(hu, spacing, direction)
    prepared = time.perf_counter()
    heat, seg = predict(network, image, device, calibration=calibration)
    modelled = time.perf_counter()
    detections, labels = extract_detections(heat, seg, threshold=threshold, max_count=max_count)
    source_shape = hu.shape
    canonical_shape = canonical.forward(np.empty(source_shape, dtype=np.uint8)).shape
    back = resample(labels, SPACING, canonical.spacing(spacing), order=0, shape=canonical_shape)
    labels_source = canonical.backward(back).astype(np.int32)
    scale = np.asarray(SPACING) / np.asarray(canonical.spacing(spacing))
    centres = np.array([canonical.index_backward(np.asarray(d.index) * scale, source_shape) for d in detections])
    done = time.perf_counter()
    return NoduleDetections(
        detections=detections, centres=centres.reshape(-1, 3), labels=labels_source, image=image,
        canonical=canonical,
        timings={"preprocess": prepared - started, "model": modelled - prepared, "postprocess": done - modelled},
    )


def saliency_on_source(network: torch.nn.Module, found: NoduleDetections, number: int,
                       spacing: Sequence[float], device: torch.device) -> np.ndarray:
    """Saliency of detection ``number`` on the source grid (see :func:`.model.saliency_map`)."""
    peak = [int(round(v)) for v in found.detections[number].index]
    heat = saliency_map(network, found.image, peak, device=device)
    source_shape = found.labels.shape
    canonical_shape = found.canonical.forward(np.empty(source_shape, dtype=np.uint8)).shape
    back = resample_window(heat, SPACING, found.canonical.spacing(spacing), shape=canonical_shape,
                           box=saliency_window(peak, found.image.shape))
    return np.clip(found.canonical.backward(back), 0.0, 1.0)
