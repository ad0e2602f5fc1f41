"""write_seg: masks on a source volume's grid -> one DICOM Segmentation (binary or fractional).

One segment per structure, each with SegmentedPropertyCategory and Type codes,
the algorithm's identification (name, family, version, parameters) and, where
given, a tracking UID that the SR's measurement group for the same finding
shares. Frames are placed through the volume's geometry (a highdicom Volume),
never by index, so the SEG lines up with the source whatever order its slices
were stored in. Empty frames are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from ai_pipelines.base import OutputKind, SeriesInput, is_valid_uid
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.volume import Volume
from ai_pipelines.writers import identity

__all__ = ["Segment", "write_seg"]

_SEGMENTATION = Code("113076", "DCM", "Segmentation")  # CID 7203 Image Derivation


@dataclass(frozen=True, slots=True, eq=False)
class Segment:
    """One structure to write as a SEG segment.

    Parameters
    ----------
    label : str
        SegmentLabel, e.g. ``"nodule 1"`` or ``"tumour core"``.
    category : Code
        SegmentedPropertyCategoryCodeSequence (CID 7150), e.g. SCT 49755003
        "Morphologically Abnormal Structure".
    property_type : Code
        SegmentedPropertyTypeCodeSequence (CID 7151), e.g. SCT 27925004 "Nodule".
    mask : numpy.ndarray
        ``(z, y, x)`` on the source volume's grid: bool for a binary SEG, or
        probabilities in [0, 1] for a fractional one.
    tracking_uid : str or None, optional
        TrackingUID shared with the SR measurement group of the same finding.
    tracking_identifier : str or None, optional
        TrackingID, e.g. ``"nodule 1"``.
    anatomic_region : Code or None, optional
        AnatomicRegionSequence, e.g. SCT 39607008 "Lung".

    Raises
    ------
    ValueError
        If the label is empty, the mask is not 3D or a tracking UID is malformed.
    """

    label: str
    category: Code
    property_type: Code
    mask: np.ndarray
    tracking_uid: str | None = None
    tracking_identifier: str | None = None
    anatomic_region: Code | None = None

    def __post_init__(self) -> None:
        if not self.label or len(self.label) > 64:
            raise ValueError(f"Segment.label={self.label!r} must be 1-64 characters")
        if self.mask.ndim != 3:
            raise ValueError(f"Segment.mask must be 3D (z, y, x), got shape {self.mask.shape}")
        if self.tracking_uid is not None and not is_valid_uid(self.tracking_uid):
            raise ValueError(f"Segment.tracking_uid={self.tracking_uid!r} is not a DICOM UID")
        if (self.tracking_uid is None) != (self.tracking_identifier is None):
            raise ValueError("Segment.tracking_uid and tracking_identifier go together")


def _highdicom_volume(volume: Volume, stacked: np.ndarray, count: int) -> hd.Volume:
    return hd.Volume(
        array=stacked,
        affine=volume.affine,
        coordinate_system="PATIENT",
        frame_of_reference_uid=volume.frame_of_reference_uid,
        channels={"SegmentNumber": list(range(1, count + 1))},
    )


def write_seg(
    series: SeriesInput,
    volume: Volume,
    segments: Sequence[Segment],
    *,
    algorithm: AlgorithmInfo,
    fractional: bool = False,
    series_number: int | None = None,
    series_description: str | None = None,
    series_instance_uid: str | None = None,
) -> Dataset:
    """Write masks as a DICOM Segmentation of the source series.

    Parameters
    ----------
    series : SeriesInput
        The source instances (referenced per frame and listed in ReferencedSeriesSequence).
    volume : Volume
        The source volume, as :func:`ai_pipelines.volume.load_volume` built it.
    segments : Sequence[Segment]
        One or more structures, masks on ``volume``'s grid.
    algorithm : AlgorithmInfo
        Written to every segment's SegmentAlgorithmIdentification and to ContributingEquipment.
    fractional : bool, optional
        Write a FRACTIONAL (PROBABILITY, 0-255) SEG instead of a BINARY one.
    series_number : int or None, optional
        Defaults to :func:`~ai_pipelines.writers.identity.output_series_number`.
    series_description : str or None, optional
        Defaults to ``"AI <algorithm name> segmentation"``.
    series_instance_uid : str or None, optional
        A new UID by default.

    Returns
    -------
    Dataset
        A highdicom Segmentation (BINARY or FRACTIONAL); it shares the source's study
        and frame of reference.

    Raises
    ------
    ValueError
        If there is no segment, a mask's shape differs from the volume's, a binary
        mask is not boolean or a fractional one leaves [0, 1].
    """
    if not segments:
        raise ValueError("write_seg needs at least one segment")
    for segment in segments:
        if segment.mask.shape != volume.shape:
            raise ValueError(
                f"segment {segment.label!r} has shape {segment.mask.shape}, volume {volume.shape}"
            )
        if not fractional and segment.mask.dtype != np.bool_:
            raise ValueError(f"segment {segment.label!r}: a binary SEG needs a boolean mask")
        if fractional and (np.nanmin(segment.mask) < 0 or np.nanmax(segment.mask) > 1):
            raise ValueError(f"segment {segment.label!r}: probabilities must lie in [0, 1]")
    algorithm_id = identity.segment_algorithm(algorithm)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=segment.label,
            segmented_property_category=segment.category,
            segmented_property_type=segment.property_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_id,
            tracking_uid=segment.tracking_uid,
            tracking_id=segment.tracking_identifier,
            anatomic_regions=[segment.anatomic_region] if segment.anatomic_region else None,
        )
        for number, segment in enumerate(segments, start=1)
    ]
    dtype = np.float32 if fractional else np.uint8
    stacked = np.stack([segment.mask.astype(dtype) for segment in segments], axis=-1)
    source = series.datasets[0]
    seg = hd.seg.Segmentation(
        source_images=list(series.datasets),
        pixel_array=_highdicom_volume(volume, stacked, len(segments)),
        segmentation_type="FRACTIONAL" if fractional else "BINARY",
        segment_descriptions=descriptions,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number or identity.output_series_number(
            source.get("SeriesNumber"), OutputKind.SEG),
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=identity.MANUFACTURER,
        manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version,
        device_serial_number=identity.device_serial_number(algorithm),
        content_label="AI_SEG",
        content_description=f"AI {algorithm.name} {algorithm.version}"[:64],
        omit_empty_frames=bool(stacked.any()),
        contributing_equipment=[identity.contributing_equipment(algorithm)],
    )
    seg.SeriesDescription = series_description or f"AI {algorithm.name} segmentation"[:64]
    _fill_missing_sources(seg, volume)
    return seg


def _fill_missing_sources(seg: Dataset, volume: Volume) -> None:
    """Reference the source slice of frames highdicom could not match (mosaic tiles).

    highdicom matches SEG frames to source frames by plane position. A mosaic
    tile has no position of its own in the source header, so such frames are
    matched here through the volume's geometry; their spatial locations are not
    preserved (the tile is a part of the source image).
    """
    for item in seg.get("PerFrameFunctionalGroupsSequence", []):
        derivation = item.get("DerivationImageSequence")
        if derivation is not None and any(len(d.get("SourceImageSequence", [])) for d in derivation):
            continue
        position = item.PlanePositionSequence[0].ImagePositionPatient
        k = int(round(float(volume.patient_to_index([float(v) for v in position])[0])))
        if not 0 <= k < volume.shape[0]:
            continue
        source = identity.source_image_item(volume.sources[k])
        source.SpatialLocationsPreserved = "NO"
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator = _SEGMENTATION.value, _SEGMENTATION.scheme_designator
        code.CodeMeaning = _SEGMENTATION.meaning
        entry = Dataset()
        entry.DerivationCodeSequence = [code]
        entry.SourceImageSequence = [source]
        item.DerivationImageSequence = [entry]
