"""Secondary Captures: a key slice with results drawn on it, or any image a pipeline rendered.

:func:`write_sc` windows a slice with the source header's window (or one chosen
from the data), outlines segments in colour, circles findings, blends in an
optional heat map (saliency) and burns "AI" into the corner.
:func:`write_image_sc` wraps an image a pipeline has already rendered (a
montage, say), grey or RGB, and is what :func:`write_sc` itself ends with, so
every SC carries the same provenance: references to its source slices
(SourceImageSequence) and series, ImageType DERIVED\\SECONDARY with
ConversionType WSD, the algorithm in ContributingEquipment and
DerivationDescription, and a SeriesNumber derived from the source's. The
Secondary Capture IOD has no Frame of Reference module, so the link to patient
space is the referenced source slices.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    JPEG2000MC,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    generate_uid,
)

from ai_pipelines.base import Finding, OutputKind, SeriesInput
from ai_pipelines.frames import FrameRef
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.volume import Volume
from ai_pipelines.writers import identity, overlay
from ai_pipelines.writers.seg import Segment

__all__ = ["choose_key_slice", "patient_orientation", "write_image_sc", "write_sc"]

_MARK_COLOUR = (255, 230, 0)
_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))
_ORIENTATION = re.compile(r"^[LRAPHF]{1,3}$")
# Transfer syntaxes that may have lost information: their images stay "lossy" in any SC.
_LOSSY_SYNTAXES = frozenset(
    {JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless, JPEG2000, JPEG2000MC, HTJ2K}
)


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
    return write_image_sc(
        series, rgb, algorithm=algorithm, sources=[volume.sources[k]],
        series_description=series_description or f"AI {algorithm.name} key image",
        derivation_description=(
            f"Key image with AI results drawn on it by {algorithm.name} {algorithm.version}"
        ),
        image_comments=f"AI result ({algorithm.name} {algorithm.version}); not an acquired image",
        patient_orientation=(
            patient_orientation(volume.direction[2]), patient_orientation(volume.direction[1])
        ),
        pixel_spacing=volume.pixel_spacing,
        series_number=series_number,
        series_instance_uid=series_instance_uid,
        instance_number=instance_number,
    )


def write_image_sc(
    series: SeriesInput,
    pixels: np.ndarray,
    *,
    algorithm: AlgorithmInfo,
    sources: Sequence[FrameRef],
    series_description: str,
    derivation_description: str,
    image_comments: str,
    patient_orientation: tuple[str, str] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    series_number: int | None = None,
    series_index: int = 0,
    series_instance_uid: str | None = None,
    instance_number: int = 1,
) -> Dataset:
    """Write an image a pipeline rendered (8-bit grey or RGB) as a Secondary Capture.

    Parameters
    ----------
    series : SeriesInput
        The source instances.
    pixels : numpy.ndarray
        ``(rows, columns)`` uint8 (stored MONOCHROME2) or ``(rows, columns, 3)`` uint8
        (stored RGB), as it should be displayed.
    algorithm : AlgorithmInfo
        Written to ContributingEquipment.
    sources : Sequence[FrameRef]
        The source slices shown, in the order shown; each becomes a SourceImageSequence
        item and its instance is listed in ReferencedSeriesSequence.
    series_description : str
        What a radiologist reads in the series list (cut to 64 characters).
    derivation_description : str
        How the image was made (DerivationDescription, cut to 1024 characters).
    image_comments : str
        ImageComments, e.g. that the image was not acquired (cut to 10240 characters).
    patient_orientation : tuple[str, str] or None, optional
        PatientOrientation of the rows and columns (1-3 of L, R, A, P, H, F each), when
        every part of the image shares one; empty (unknown) otherwise.
    pixel_spacing : tuple[float, float] or None, optional
        Row and column spacing (mm) of the displayed pixels, when one holds for all of them.
    series_number : int or None, optional
        Defaults to :func:`~ai_pipelines.writers.identity.output_series_number`.
    series_index : int, optional
        0-9, tells apart several SC series of one source in the default numbering.
    series_instance_uid : str or None, optional
        A new UID by default; pass one to put several images in one series.
    instance_number : int, optional
        InstanceNumber within that series.

    Returns
    -------
    Dataset
        A highdicom SCImage (8 bits) in the source's study; LossyImageCompression "01"
        when a source slice was lossy compressed; BurnedInAnnotation "YES" when a source
        slice says it has text burned in, absent (unknown) when a colour source does not
        say, else "NO" (our own marks and labels identify no one).

    Raises
    ------
    ValueError
        If ``pixels`` is not 8-bit grey or RGB, ``sources`` is empty or names an
        instance outside ``series``, or an orientation is not made of L, R, A, P, H, F.
    """
    if pixels.dtype != np.uint8 or not (
        pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)
    ):
        raise ValueError(
            f"pixels must be (rows, columns) or (rows, columns, 3) uint8, got "
            f"{pixels.shape} {pixels.dtype}"
        )
    if not sources:
        raise ValueError("an SC needs at least one source slice")
    by_uid = {str(ds.SOPInstanceUID): ds for ds in series.datasets}
    unknown = [ref.sop_instance_uid for ref in sources if ref.sop_instance_uid not in by_uid]
    if unknown:
        raise ValueError(f"sources name instances outside the series: {', '.join(unknown[:3])}")
    row_letters, column_letters = patient_orientation or ("", "")
    for letters in (row_letters, column_letters) if patient_orientation else ():
        if not _ORIENTATION.match(letters):
            raise ValueError(f"patient_orientation {patient_orientation!r}: expected 1-3 of LRAPHF")
    source = series.datasets[0]
    sc = hd.sc.SCImage(
        pixel_array=pixels,
        photometric_interpretation="MONOCHROME2" if pixels.ndim == 2 else "RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=series.study_instance_uid,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number or identity.output_series_number(
            source.get("SeriesNumber"), OutputKind.SC, series_index),
        sop_instance_uid=generate_uid(),
        instance_number=instance_number,
        manufacturer=identity.MANUFACTURER,
        # highdicom takes one letter per axis; the full value (up to three, PS3.3
        # C.7.6.1.1.1) or an empty one (unknown, type 2C) is set below.
        patient_orientation=(row_letters[:1] or "L", column_letters[:1] or "P"),
        pixel_spacing=pixel_spacing,
        contributing_equipment=[identity.contributing_equipment(algorithm)],
    )
    sc["PatientOrientation"].value = [row_letters, column_letters] if patient_orientation else ""
    identity.copy_patient_and_study(source, sc)
    sc.SeriesDescription = series_description[:64]
    identity.copy_anatomy(source, sc)
    sc.ConversionType = "WSD"
    burned_in = _burned_in([by_uid[ref.sop_instance_uid] for ref in sources])
    if burned_in is not None:
        sc.BurnedInAnnotation = burned_in
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.DerivationDescription = derivation_description[:1024]
    sc.ImageComments = image_comments[:10240]
    if any(_lossy(by_uid[ref.sop_instance_uid]) for ref in sources):
        sc.LossyImageCompression = "01"  # once lossy, always lossy
    sc.SourceImageSequence = [identity.source_image_item(ref) for ref in sources]
    sc.ReferencedSeriesSequence = [identity.referenced_series_item(series, sources)]
    return sc


def _burned_in(datasets: Sequence[Dataset]) -> str | None:
    values = [ds.get("BurnedInAnnotation") for ds in datasets]
    if "YES" in values:
        return "YES"
    silent_colour = any(
        value is None and not str(ds.get("PhotometricInterpretation", "")).startswith("MONOCHROME")
        for ds, value in zip(datasets, values, strict=True)
    )  # screens of US, endoscopy and the like often carry text they do not declare
    return None if silent_colour else "NO"


def _lossy(ds: Dataset) -> bool:
    syntax = getattr(ds.get("file_meta"), "TransferSyntaxUID", None)
    return ds.get("LossyImageCompression") == "01" or syntax in _LOSSY_SYNTAXES
