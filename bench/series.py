"""Synthetic CT and MR series for the ingest bench: deterministic, seeded, cached on disk.

A ``SeriesSpec`` describes one study (one or more series of equal slices). ``materialise``
writes it as Explicit VR Little Endian Part 10 files under a cache directory named after the
spec, or reuses what an earlier call wrote there (a ``manifest.json`` written last marks a
complete set). The same spec and seed always give the same UIDs and the same pixel bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

#: Bump when the generator's output changes, so old caches are not reused.
GENERATOR_VERSION = 1
CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
#: Implementation Class UID of the files' meta header (under pydicom's UID root).
IMPLEMENTATION_CLASS_UID = UID("1.2.826.0.1.3680043.8.498.1")


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """One synthetic study: ``series_count`` series of ``slices`` slices each."""

    name: str
    modality: str  # "CT" or "MR"
    slices: int
    rows: int
    columns: int
    series_count: int = 1
    seed: int = 1

    def __post_init__(self) -> None:
        if self.modality not in ("CT", "MR"):
            raise ValueError(f"modality must be CT or MR, got {self.modality!r}")
        if min(self.slices, self.rows, self.columns, self.series_count) < 1:
            raise ValueError(f"slices, rows, columns and series_count must be >= 1: {self}")

    @property
    def key(self) -> str:
        """Cache directory name: readable, plus a digest of every parameter."""
        blob = json.dumps({**asdict(self), "v": GENERATOR_VERSION}, sort_keys=True).encode()
        digest = hashlib.sha256(blob).hexdigest()[:10]
        return (
            f"{self.name}-{self.series_count}x{self.slices}-"
            f"{self.rows}x{self.columns}-seed{self.seed}-{digest}"
        )


@dataclass(frozen=True, slots=True)
class SeriesFiles:
    """A materialised spec: its Part 10 files in sending order and their total size."""

    spec: SeriesSpec
    root: Path
    files: tuple[Path, ...]
    total_bytes: int


def _uid(spec: SeriesSpec, *parts: object) -> UID:
    """A UID that depends only on the spec's identity and ``parts``."""
    sources = ["dicomnode-bench", spec.modality, str(spec.seed), *(str(p) for p in parts)]
    return generate_uid(entropy_srcs=sources)


def _phantom(spec: SeriesSpec, series_index: int, slice_index: int) -> np.ndarray:
    """One slice of a torso phantom in HU (CT) or arbitrary 12-bit intensity (MR)."""
    rng = np.random.default_rng([spec.seed, series_index, slice_index])
    y, x = np.ogrid[-1.0 : 1.0 : spec.rows * 1j, -1.0 : 1.0 : spec.columns * 1j]
    t = slice_index / max(spec.slices - 1, 1)  # 0 at the top slice, 1 at the bottom
    torso = (x / 0.9) ** 2 + (y / (0.62 + 0.06 * np.sin(np.pi * t))) ** 2 <= 1.0
    fat_rim = torso & ((x / 0.84) ** 2 + (y / (0.56 + 0.06 * np.sin(np.pi * t))) ** 2 > 1.0)
    lungs = (((np.abs(x) - 0.4) / 0.24) ** 2 + ((y + 0.08) / (0.36 * (1.0 - 0.5 * t))) ** 2) <= 1.0
    vertebra = (x / 0.1) ** 2 + ((y - 0.42) / 0.1) ** 2 <= 1.0
    aorta = ((x + 0.08) / 0.05) ** 2 + ((y - 0.25) / 0.05) ** 2 <= 1.0
    lesion = ((x - 0.3) ** 2 + (y + 0.1) ** 2 + ((t - 0.5) * 2.0) ** 2) <= 0.12**2
    if spec.modality == "CT":
        image = np.full((spec.rows, spec.columns), -1000.0)
        image[torso] = 45.0
        image[fat_rim] = -90.0
        image[lungs] = -840.0
        image[aorta] = 180.0
        image[vertebra] = 650.0
        image[lesion] = 60.0
        image += rng.normal(0.0, 14.0, image.shape)
    else:
        image = np.zeros((spec.rows, spec.columns))
        contrast = (1.0, 0.7, 1.3)[series_index % 3]  # e.g. T1, T2, PD look different
        image[torso] = 1300.0 * contrast
        image[fat_rim] = 2400.0
        image[lungs] = 120.0
        image[aorta] = 300.0 + 900.0 * contrast
        image[vertebra] = 1900.0 / contrast
        image[lesion] = 2800.0
        image += np.abs(rng.normal(0.0, 35.0, image.shape))
    return image


def _dataset(spec: SeriesSpec, series_index: int, slice_index: int) -> Dataset:
    sop_class_uid = CT_IMAGE_STORAGE if spec.modality == "CT" else MR_IMAGE_STORAGE
    sop_instance_uid = _uid(spec, "instance", series_index, slice_index)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    when = dt.datetime(2025, 3, 1, 9, 0, 0) + dt.timedelta(days=spec.seed % 365)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = when.strftime("%H%M%S")
    ds.AccessionNumber = f"BENCH{spec.seed % 10000:04d}{spec.modality}"
    ds.Modality = spec.modality
    ds.Manufacturer = "dicomnode bench"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = f"bench {spec.name}"
    ds.SeriesDescription = f"{spec.modality} synthetic {series_index + 1}"
    ds.PatientName = f"Bench^{spec.name.capitalize()}"
    ds.PatientID = f"BENCH-{spec.name}-{spec.seed}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = _uid(spec, "study")
    ds.SeriesInstanceUID = _uid(spec, "series", series_index)
    ds.FrameOfReferenceUID = _uid(spec, "frame-of-reference")
    ds.StudyID = "1"
    ds.SeriesNumber = series_index + 1
    ds.InstanceNumber = slice_index + 1

    field_of_view = 360.0 if spec.modality == "CT" else 240.0
    thickness = 1.0 if spec.modality == "CT" else 4.0
    z = -thickness * slice_index
    ds.PatientPosition = "HFS"
    ds.ImagePositionPatient = [-field_of_view / 2, -field_of_view / 2, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [field_of_view / spec.rows, field_of_view / spec.columns]
    ds.SliceThickness = thickness
    ds.SliceLocation = z

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.BitsAllocated = 16
    image = _phantom(spec, series_index, slice_index)
    if spec.modality == "CT":
        ds.KVP = 120
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        pixels = np.clip(np.rint(image) + 1024, -32768, 32767).astype("<i2")
    else:
        ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "SE", "NONE", "2D"
        ds.RepetitionTime, ds.EchoTime, ds.MagneticFieldStrength = 500 + 1500 * series_index, 15, 1.5
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = 1400, 2800
        pixels = np.clip(np.rint(image), 0, 4095).astype("<u2")
    ds.PixelData = pixels.tobytes()
    return ds


def _read_manifest(root: Path, spec: SeriesSpec) -> SeriesFiles | None:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("spec") != asdict(spec) or manifest.get("generator_version") != GENERATOR_VERSION:
        return None
    files = tuple(root / name for name in manifest["files"])
    sizes = manifest["sizes"]
    for path, size in zip(files, sizes, strict=True):
        try:
            if path.stat().st_size != size:
                return None
        except OSError:
            return None
    return SeriesFiles(spec=spec, root=root, files=files, total_bytes=sum(sizes))


def materialise(spec: SeriesSpec, cache_dir: Path) -> SeriesFiles:
    """The spec's files under ``cache_dir``: reused when complete, generated otherwise."""
    root = cache_dir / spec.key
    cached = _read_manifest(root, spec)
    if cached is not None:
        return cached
    building = cache_dir / f".{spec.key}.{os.getpid()}.partial"
    shutil.rmtree(building, ignore_errors=True)
    names: list[str] = []
    sizes: list[int] = []
    for series_index in range(spec.series_count):
        series_dir = building / f"series{series_index + 1:02d}"
        series_dir.mkdir(parents=True)
        for slice_index in range(spec.slices):
            name = f"series{series_index + 1:02d}/IM{slice_index + 1:05d}.dcm"
            path = building / name
            _dataset(spec, series_index, slice_index).save_as(path, enforce_file_format=True)
            names.append(name)
            sizes.append(path.stat().st_size)
    manifest = {"spec": asdict(spec), "generator_version": GENERATOR_VERSION, "files": names, "sizes": sizes}
    (building / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(root, ignore_errors=True)
    building.rename(root)
    result = _read_manifest(root, spec)
    assert result is not None
    return result
