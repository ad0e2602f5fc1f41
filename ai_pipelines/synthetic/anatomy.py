"""Real anatomy to build training pairs on: clean volumes from public, installable sources.

Nothing here is bundled with the project; each loader reads a package the test command
installs (or ``../shared/data``) and raises :class:`AnatomyUnavailable`, naming what to
install, when it is missing. Sources (see ``../shared/data/README.md``):

- :func:`head_ct`: ProMED CT 0051, a real head CT (108 x 256 x 256, 0.957 x 0.957 x 1.5 mm,
  HU) inside ``Cranium.inv3`` of Debian ``invesalius-examples``.
- :func:`abdomen_ct`: 20 slices of a real abdomen CT (Siemens Biograph40 mCT, 512², 2 mm apart),
  TotalSegmentator's test files in ``../shared/data/dicom/totalseg_example_ct`` (CC BY 4.0).
- :func:`colin27_t1`: the colin27 T1 brain (average of 27 scans, 0.5 mm), Debian ``mricron-data``.
- :func:`mni_t1`: the MNI ICBM152 2009 T1 template (1 mm), inside PyPI ``nilearn``.

Every volume comes as ``(z, y, x)`` float32 with its spacing in mm, z running from feet to
head and y from anterior to posterior, so that axial slices look as a radiologist expects.
"""

from __future__ import annotations

import functools
import os
import plistlib
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "AnatomyUnavailable",
    "RealVolume",
    "abdomen_ct",
    "colin27_t1",
    "head_ct",
    "mni_t1",
    "shared_data_dir",
]

INVESALIUS_CRANIUM = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
MRICRON_COLIN27 = Path("/usr/share/mricron/templates/ch2better.nii.gz")


class AnatomyUnavailable(FileNotFoundError):
    """A source of real anatomy is not installed here; the message says how to get it."""


@dataclass(frozen=True, slots=True, eq=False)
class RealVolume:
    """A real volume: values on a regular grid and where they came from.

    Parameters
    ----------
    values : numpy.ndarray
        ``(z, y, x)`` float32: HU for CT, arbitrary intensity for MR.
    spacing : tuple[float, float, float]
        Voxel size ``(z, y, x)`` in mm.
    source : str
        One line naming the data, for every figure measured on it.
    """

    values: np.ndarray
    spacing: tuple[float, float, float]
    source: str


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository (or ``$DICOMNODE_SHARED_DATA``)."""
    configured = os.environ.get("DICOMNODE_SHARED_DATA")
    folder = Path(configured) if configured else Path(__file__).resolve().parents[3] / "shared" / "data"
    if not folder.is_dir():
        raise AnatomyUnavailable(f"{folder} is missing: put ../shared beside the repository "
                                 "or set DICOMNODE_SHARED_DATA")
    return folder


@functools.cache
def head_ct() -> RealVolume:
    """The invesalius-examples head CT in HU (air -1024), ``(108, 256, 256)``."""
    if not INVESALIUS_CRANIUM.is_file():
        raise AnatomyUnavailable(f"{INVESALIUS_CRANIUM} is missing: apt-get install invesalius-examples")
    with tarfile.open(INVESALIUS_CRANIUM, "r:gz") as archive:
        members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
        header = plistlib.loads(_read(archive, members["main.plist"]))
        matrix = header["matrix"]
        raw = _read(archive, members[matrix["filename"]])
    values = np.frombuffer(raw, dtype=np.dtype(matrix["dtype"])).reshape(matrix["shape"]).astype(np.float32)
    sx, sy, sz = (float(v) for v in header["spacing"])
    # This file stores slices feet-first but rows posterior-first (checked on axial and
    # sagittal reformats): flip the rows so that y runs anterior -> posterior.
    values = np.ascontiguousarray(values[:, ::-1])
    return RealVolume(values=values, spacing=(sz, sy, sx),
                      source=f"real head CT '{header.get('name', 'ProMED CT 0051')}' (Debian invesalius-examples)")


def _read(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:
        raise AnatomyUnavailable(f"{INVESALIUS_CRANIUM}: {member.name} is not a regular file")
    return handle.read()


@functools.cache
def abdomen_ct() -> RealVolume:
    """The 20-slice TotalSegmentator abdomen CT in HU, ``(20, 512, 512)``, slices 2 mm apart.

    Its UIDs were blanked by an anonymiser, so slices are sorted by ImagePositionPatient here
    rather than through :func:`~ai_pipelines.volume.load_volume`, which needs valid UIDs.
    """
    import pydicom

    folder = shared_data_dir() / "dicom" / "totalseg_example_ct"
    datasets = [pydicom.dcmread(path) for path in sorted(folder.iterdir()) if path.is_file()]
    if not datasets:
        raise AnatomyUnavailable(f"{folder} holds no DICOM files")
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    slices = [ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
              for ds in datasets]
    z = np.diff([float(ds.ImagePositionPatient[2]) for ds in datasets])
    row, column = (float(v) for v in datasets[0].PixelSpacing)
    return RealVolume(values=np.stack(slices), spacing=(float(np.median(z)), row, column),
                      source="real abdomen CT, 20 slices (TotalSegmentator test data, ../shared/data)")


def _nifti_ras_to_zyx(image: object) -> tuple[np.ndarray, tuple[float, float, float]]:
    import nibabel as nib

    canonical = nib.as_closest_canonical(image)  # RAS+: +x Right, +y Anterior, +z Superior
    data = np.asarray(canonical.get_fdata(dtype=np.float32))
    zooms = canonical.header.get_zooms()[:3]
    # -> (z, y, x) with z feet->head, y anterior->posterior, x right->left: the LPS order in
    # which DICOM axial images are shown.
    volume = np.transpose(data, (2, 1, 0))[:, ::-1, ::-1]
    return np.ascontiguousarray(volume), (float(zooms[2]), float(zooms[1]), float(zooms[0]))


@functools.cache
def colin27_t1() -> RealVolume:
    """The colin27 T1 brain with skull (Debian mricron-data ``ch2better``), 0.5 mm."""
    import nibabel as nib

    if not MRICRON_COLIN27.is_file():
        raise AnatomyUnavailable(f"{MRICRON_COLIN27} is missing: apt-get install mricron-data")
    values, spacing = _nifti_ras_to_zyx(nib.load(MRICRON_COLIN27))
    return RealVolume(values=values, spacing=spacing, source="colin27 T1 brain (Debian mricron-data)")


@functools.cache
def mni_t1() -> RealVolume:
    """The MNI ICBM152 2009 T1 template shipped in the nilearn wheel, 1 mm, skull-stripped."""
    try:
        from nilearn.datasets import load_mni152_template
    except ImportError as exc:
        raise AnatomyUnavailable("nilearn is missing: pip install 'dicomnode[ai]'") from exc
    values, spacing = _nifti_ras_to_zyx(load_mni152_template(resolution=1))
    return RealVolume(values=values, spacing=spacing, source="MNI ICBM152 2009 T1 template (PyPI nilearn)")
