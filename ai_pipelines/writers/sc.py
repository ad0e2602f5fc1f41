"""write_sc: a key slice with results drawn on it -> an RGB Secondary Capture.

The slice is windowed with the source header's window (or one chosen from the
data), segments are outlined in colour, findings circled, an optional heat map
(saliency) blended in, and "AI" is burned into the corner. The SC references
its source slice (SourceImageSequence) and series, is marked DERIVED\\SECONDARY
with ConversionType WSD, and carries the algorithm in ContributingEquipment and
DerivationDescription. The Secondary Capture IOD has no Frame of Reference
module, so the link to patient space is the referenced source slice.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ai_pipelines.base import Finding, OutputKind, SeriesInput
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.volume import Volume
from ai_pipelines.writers import identity, overlay
from ai_pipelines.writers.seg import Segment

__all__ = ["choose_key_slice", "patient_orientation", "write_sc"]

_MARK_COLOUR = (255, 230, 0)
_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))


def patient_orientation(cosine: Sequence[float]) -> str:
    """PatientOrientation letters of a direction, strongest component first (e.g. "LP").

    Parameters
    ----------
    cosine : Sequence[float]
        Unit vector in LPS.

    Returns
    -------
    str
        One to three of L/R, P/A, H/F.
    """
    order = np.argsort(-np.abs(np.asarray(cosine)))
    letters = [
        _LETTERS[axis][0 if cosine[axis] > 0 else 1] for axis in order if abs(cosine[axis]) >= 0.3
    ]
    return "".join(letters) or _LETTERS[int(order[0])][0 if cosine[int(order[0])] > 0 else 1]


def choose_key_slice(
    volume: Volume,
    segments: Sequence[Segment] = (),
    findings: Sequence[Finding] = (),
    heatmap: np.ndarray | None = None,
) -> int:
    """Pick the slice to show: most segmented area, else the first finding, else heat, else middle.

    Parameters
    ----------
    volume : Volume
        The source volume.
    segments, findings, heatmap : optional
        The results to show.

    Returns
    -------
    int
        Slice index ``k``.
    """
    if segments:
        area = sum(np.asarray(s.mask > 0.5, dtype=np.int64).sum(axis=(1, 2)) for s in segments)
        if np.any(area):
            return int(np.argmax(area))
    if findings:
        k = float(volume.patient_to_index(findings[0].centre)[0])
        return int(np.clip(round(k), 0, volume.shape[0] - 1))
    if heatmap is not None and np.any(heatmap > 0):
        return int(np.argmax(heatmap.reshape(volume.shape[0], -1).max(axis=1)))
    return volume.shape[0] // 2


def _default_window(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [1, 99])
    return (float(low + high) / 2, max(float(high - low), 1.0))


def _render(
    volume: Volume,
    k: int,
    window: tuple[float, float],
    segments: Sequence[Segment],
    findings: Sequence[Finding],
    heatmap: np.ndarray | None,
) -> np.ndarray:
    rgb = overlay.to_rgb(volume.array[k], window)
    if heatmap is not None:
        overlay.blend_heatmap(rgb, heatmap[k])
    for number, segment in enumerate(segments):
        colour = overlay.PALETTE[number % len(overlay.PALETTE)]
        overlay.draw_outline(rgb, np.asarray(segment.mask[k] > 0.5), colour)
    for number, finding in enumerate(findings):
        kk, j, i = volume.patient_to_index(finding.centre)
        half = (finding.diameter_mm or 0.0) / 2
        if abs(kk - k) * volume.spacing[0] > half + volume.spacing[0] / 2:
            continue  # the finding does not cross this slice
        colour = overlay.PALETTE[(len(segments) + number) % len(overlay.PALETTE)]
        overlay.draw_circle(rgb, (j, i), max(half, 3.0) + 2.0, volume.pixel_spacing, colour)
    overlay.burn_ai_mark(rgb, _MARK_COLOUR)
    return rgb


def write_sc(
    series: SeriesInput,
    volume: Volume,
    *,
    algorithm: AlgorithmInfo,
    segments: Sequence[Segment] = (),
    findings: Sequence[Finding] = (),
    heatmap: np.ndarray | None = None,
    slice_index: int | None = None,
    window: tuple[float, float] | None = None,
    series_number: int | None = None,
    series_description: str | None = None,
    series_instance_uid: str | None = None,
    instance_number: int = 1,
) -> Dataset:
    """Render a key slice with results outlined and write it as an RGB Secondary Capture.

    Parameters
    ----------
    series : SeriesInput
        The source instances.
    volume : Volume
        The source volume.
    algorithm : AlgorithmInfo
        Written to ContributingEquipment and DerivationDescription.
    segments : Sequence[Segment], optional
        Masks to outline, each in its palette colour.
    findings : Sequence[Finding], optional
        Findings to circle where they cross the slice.
    heatmap : numpy.ndarray or None, optional
        ``(z, y, x)`` saliency or probability in [0, 1] to blend in.
    slice_index : int or None, optional
        Slice to show; :func:`choose_key_slice` by default.
    window : tuple[float, float] or None, optional
        (centre, width); the header's window, else the 1st-99th percentile range.
    series_number : int or None, optional
        Defaults to :func:`~ai_pipelines.writers.identity.output_series_number`.
    series_description : str or None, optional
        Defaults to ``"AI <algorithm name> key image"``.
    series_instance_uid : str or None, optional
        A new UID by default; pass one to put several key images in one series.
    instance_number : int, optional
        InstanceNumber within that series.

    Returns
    -------
    Dataset
        A highdicom SCImage (RGB, 8 bits) in the source's study.

    Raises
    ------
    ValueError
        If ``slice_index`` is outside the volume or a mask or heat map has the wrong shape.
    """
    for array in [s.mask for s in segments] + ([heatmap] if heatmap is not None else []):
        if array.shape != volume.shape:
            raise ValueError(f"overlay has shape {array.shape}, volume {volume.shape}")
    k = choose_key_slice(volume, segments, findings, heatmap) if slice_index is None else slice_index
    if not 0 <= k < volume.shape[0]:
        raise ValueError(f"slice_index={k} outside 0..{volume.shape[0] - 1}")
    window = window or volume.window or _default_window(volume.array[k])
    rgb = _render(volume, k, window, segments, findings, heatmap)
    source = series.datasets[0]
    sc = hd.sc.SCImage(
        pixel_array=rgb,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=series.study_instance_uid,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number or identity.output_series_number(
            source.get("SeriesNumber"), OutputKind.SC),
        sop_instance_uid=generate_uid(),
        instance_number=instance_number,
        manufacturer=identity.MANUFACTURER,
        patient_orientation=(
            patient_orientation(volume.direction[2]), patient_orientation(volume.direction[1])
        ),
        pixel_spacing=volume.pixel_spacing,
        contributing_equipment=[identity.contributing_equipment(algorithm)],
    )
    identity.copy_patient_and_study(source, sc)
    sc.SeriesDescription = series_description or f"AI {algorithm.name} key image"[:64]
    identity.copy_anatomy(source, sc)
    sc.ConversionType = "WSD"
    sc.BurnedInAnnotation = "NO"  # no patient-identifying text; the "AI" mark identifies no one
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.DerivationDescription = (
        f"Key image with AI results drawn on it by {algorithm.name} {algorithm.version}"
    )[:1024]
    sc.ImageComments = f"AI result ({algorithm.name} {algorithm.version}); not an acquired image"
    sc.SourceImageSequence = [identity.source_image_item(volume.sources[k])]
    sc.ReferencedSeriesSequence = [identity.referenced_series_item(series, [volume.sources[k]])]
    return sc
