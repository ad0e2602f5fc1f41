"""write_derived_series: a new CT or MR image series on the source's exact grid.

For generated images (denoised, synthetic CT): one single-frame CT Image or MR
Image instance per source slice, same positions, orientation and pixel
spacing, same Study and Frame of Reference, new Series and SOP Instance UIDs.
Values go through RescaleSlope/Intercept (CT in HU, 1 HU steps; MR only when
its values need scaling, see :func:`choose_rescale`). The AI origin
is stated everywhere a person or a program looks: ImageType DERIVED\\SECONDARY,
the SeriesDescription (e.g. "AI denoised"), DerivationDescription and
DerivationCodeSequence, ImageComments, ContributingEquipment, and, unless
turned off, "AI" burned into the top-left corner of the pixels.
BurnedInAnnotation stays "NO": that attribute is about text that identifies
the patient, which the mark is not.
"""

from __future__ import annotations

import copy
from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from ai_pipelines.base import OutputKind, SeriesInput
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.volume import Volume
from ai_pipelines.writers import identity, overlay

__all__ = ["choose_rescale", "write_derived_series"]

_SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}
_INT16 = 32767
# MR acquisition attributes copied from an MR source; (keyword, default when absent).
_MR_ATTRIBUTES = (
    ("ScanningSequence", "RM"), ("SequenceVariant", "NONE"), ("ScanOptions", ""),
    ("MRAcquisitionType", ""), ("RepetitionTime", None), ("EchoTime", ""),
    ("EchoTrainLength", ""), ("InversionTime", None), ("FlipAngle", None),
    ("MagneticFieldStrength", None), ("ImagingFrequency", None), ("ImagedNucleus", None),
    ("SequenceName", None),
)


def choose_rescale(values: np.ndarray, modality: str) -> tuple[float, float]:
    """RescaleSlope and RescaleIntercept that store ``values`` in signed 16 bits.

    CT keeps slope 1 (1 HU steps) whenever the values fit; so does any image with a
    range of at least 256 that fits (an MR source stored in integers is no finer).
    Otherwise the slope spreads the values over the int16 range, so small-valued
    images (e.g. 0-1) keep their detail.

    Parameters
    ----------
    values : numpy.ndarray
        Output values (finite).
    modality : str
        ``"CT"`` or ``"MR"``.

    Returns
    -------
    tuple[float, float]
        (slope, intercept).
    """
    low, high = float(np.min(values)), float(np.max(values))
    fits = -_INT16 - 1 <= low and high <= _INT16
    if fits and (modality == "CT" or high - low >= 256):
        return 1.0, 0.0
    peak = max(abs(low), abs(high), 1e-12)
    return float(f"{peak / 32000:.6g}"), 0.0


def _percentile_window(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [1, 99])
    return (round(float(low + high) / 2, 3), round(max(float(high - low), 1.0), 3))


def _code_item(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator = code.value, code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def write_derived_series(
    series: SeriesInput,
    volume: Volume,
    values: np.ndarray,
    *,
    algorithm: AlgorithmInfo,
    series_description: str,
    derivation_description: str | None = None,
    derivation_code: Code = codes.DCM.ImageProcessing,
    modality: str | None = None,
    window: tuple[float, float] | None = None,
    burn_in_mark: bool = True,
    series_number: int | None = None,
    series_index: int = 0,
    series_instance_uid: str | None = None,
) -> list[Dataset]:
    """Write generated images as a new series on the source's grid.

    Parameters
    ----------
    series : SeriesInput
        The source instances.
    volume : Volume
        The source volume; the output has its geometry slice for slice.
    values : numpy.ndarray
        ``(z, y, x)`` output values on ``volume``'s grid (HU for CT).
    algorithm : AlgorithmInfo
        Written to Manufacturer model/software fields, ContributingEquipment and comments.
    series_description : str
        What a radiologist reads in the series list, e.g. ``"AI denoised"``.
    derivation_description : str or None, optional
        Free text on how the images were made; a default names the algorithm.
    derivation_code : Code, optional
        DerivationCodeSequence item (CID 7203); DCM 110001 "Image Processing" by default.
    modality : str or None, optional
        ``"CT"`` or ``"MR"``; the source's by default (``"CT"`` for synthetic CT from MR).
    window : tuple[float, float] or None, optional
        (centre, width); the source's when the modality is unchanged, else the 1st-99th
        percentile range.
    burn_in_mark : bool, optional
        Burn "AI" into the top-left corner; turn off where pixels feed planning software.
    series_number : int or None, optional
        Defaults to :func:`~ai_pipelines.writers.identity.output_series_number`.
    series_index : int, optional
        0-9, tells apart several derived series of one source in the default numbering.
    series_instance_uid : str or None, optional
        A new UID by default.

    Returns
    -------
    list[Dataset]
        One CT Image or MR Image instance per slice, in slice order.

    Raises
    ------
    ValueError
        If ``values`` has the wrong shape or non-finite values, or the modality is not CT or MR.
    """
    modality = modality or volume.modality
    if modality not in _SOP_CLASSES:
        raise ValueError(f"modality={modality!r}; a derived series must be CT or MR")
    if values.shape != volume.shape:
        raise ValueError(f"values have shape {values.shape}, volume {volume.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("values must be finite")
    slope, intercept = choose_rescale(values, modality)
    stored = np.clip(np.rint((values - intercept) / slope), -_INT16 - 1, _INT16).astype(np.int16)
    if window is None:
        window = volume.window if modality == volume.modality and volume.window else None
    window = window or _percentile_window(values)
    if burn_in_mark:
        top = int(np.clip(np.rint((window[0] + window[1] / 2 - intercept) / slope), -32768, _INT16))
        for k in range(stored.shape[0]):
            overlay.burn_ai_mark(stored[k], top)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in series.datasets}
    now = datetime.now()
    shared = _shared_attributes(series, volume, algorithm, modality, now)
    shared.SeriesInstanceUID = series_instance_uid or generate_uid()
    shared.SeriesNumber = series_number or identity.output_series_number(
        series.datasets[0].get("SeriesNumber"), OutputKind.DERIVED, series_index)
    shared.SeriesDescription = series_description[:64]
    if modality == "CT" or (slope, intercept) != (1.0, 0.0):
        # the MR IOD has no Modality LUT; it is written only when the values need it
        shared.RescaleSlope, shared.RescaleIntercept = slope, intercept
    shared.WindowCenter, shared.WindowWidth = window
    shared.DerivationDescription = (
        derivation_description
        or f"Generated by AI algorithm {algorithm.name} {algorithm.version} from series "
        f"{series.series_instance_uid}; not an acquired image"
    )[:1024]
    shared.DerivationCodeSequence = [_code_item(derivation_code)]
    outputs = []
    for k in range(volume.shape[0]):
        ref = volume.sources[k]
        source = by_uid[ref.sop_instance_uid]
        ds = copy.deepcopy(shared)
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [round(v, 6) for v in volume.slice_position(k)]
        ds.SliceLocation = round(float(np.dot(volume.slice_position(k), volume.direction[0])), 6)
        ds.SliceThickness = source.get("SliceThickness") or volume.spacing[0]
        if source.get("LossyImageCompression") == "01":
            ds.LossyImageCompression = "01"  # once lossy, always lossy
        ds.SourceImageSequence = [identity.source_image_item(ref)]
        ds.ReferencedSeriesSequence = [identity.referenced_series_item(series, [ref])]
        ds.PixelData = stored[k].tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        outputs.append(ds)
    return outputs


def _shared_attributes(
    series: SeriesInput, volume: Volume, algorithm: AlgorithmInfo, modality: str, now: datetime
) -> Dataset:
    source = series.datasets[0]
    ds = Dataset()
    if "SpecificCharacterSet" in source:
        ds.SpecificCharacterSet = source.SpecificCharacterSet
    ds.SOPClassUID = _SOP_CLASSES[modality]
    identity.copy_patient_and_study(source, ds)
    ds.Modality = modality
    ds.SeriesDate, ds.SeriesTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ContentDate, ds.ContentTime = ds.SeriesDate, ds.SeriesTime
    ds.PatientPosition = source.get("PatientPosition", "")
    identity.copy_anatomy(source, ds)
    ds.FrameOfReferenceUID = volume.frame_of_reference_uid
    ds.PositionReferenceIndicator = source.get("PositionReferenceIndicator", "")
    ds.Manufacturer = identity.MANUFACTURER
    ds.ManufacturerModelName = algorithm.name
    ds.SoftwareVersions = algorithm.version
    ds.DeviceSerialNumber = identity.device_serial_number(algorithm)
    ds.ContributingEquipmentSequence = [identity.contributing_equipment(algorithm)]
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL" if modality == "CT" else "OTHER"]
    ds.BurnedInAnnotation = "NO"
    ds.ImageComments = (
        f"AI-generated image ({algorithm.name} {algorithm.version}); not acquired from the patient"
    )
    ds.ImageOrientationPatient = [round(v, 8) for v in volume.image_orientation]
    ds.PixelSpacing = [round(v, 8) for v in volume.pixel_spacing]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    if modality == "CT":
        ds.RescaleType = "HU"
        ds.KVP = source.get("KVP", "") if volume.modality == "CT" else ""
        ds.AcquisitionNumber = source.get("AcquisitionNumber", "")
    else:
        for keyword, default in _MR_ATTRIBUTES:
            if volume.modality == "MR" and source.get(keyword) not in (None, ""):
                ds[keyword] = copy.deepcopy(source[keyword])
            elif default is not None:
                setattr(ds, keyword, default)
    return ds
