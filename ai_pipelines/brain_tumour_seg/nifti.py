"""A NIfTI brain volume as a DICOM MR series (axial, LPS), so real research data can go through run().

The BraTS-style NIfTI files in ``../shared/data/brain`` have no DICOM; this turns one into an
ordinary single-frame MR series with :func:`~ai_pipelines.synthetic.series.make_series` on an
axial grid whose geometry follows the NIfTI affine (nearest axis-aligned orientation:
oblique affines are rounded to the closest axial stack, which the volumes here already are).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ai_pipelines.synthetic.series import AXIAL, Grid, make_series

__all__ = ["NiftiVolume", "nifti_series", "read_nifti"]


@dataclass(frozen=True, slots=True, eq=False)
class NiftiVolume:
    """A NIfTI volume in DICOM display order.

    Parameters
    ----------
    values : numpy.ndarray
        ``(z, y, x)`` float32, z feet -> head, y anterior -> posterior, x right -> left (LPS).
    spacing : tuple[float, float, float]
        Voxel size (z, y, x) in mm.
    centre : tuple[float, float, float]
        Patient position (LPS mm) of the middle of the volume.
    """

    values: np.ndarray
    spacing: tuple[float, float, float]
    centre: tuple[float, float, float]


def read_nifti(path: Path | str) -> NiftiVolume:
    """Read a NIfTI file into LPS ``(z, y, x)`` order.

    Parameters
    ----------
    path : Path or str
        A ``.nii`` or ``.nii.gz`` file.

    Returns
    -------
    NiftiVolume
        Values, spacing and the centre in patient coordinates.
    """
    import nibabel as nib

    canonical = nib.as_closest_canonical(nib.load(str(path)))  # RAS+
    data = np.asarray(canonical.get_fdata(dtype=np.float32))
    zooms = canonical.header.get_zooms()[:3]
    values = np.ascontiguousarray(np.transpose(data, (2, 1, 0))[:, ::-1, ::-1])  # -> z, P, L
    middle = canonical.affine @ np.array([*((np.array(data.shape[:3]) - 1) / 2), 1.0])
    centre = (-float(middle[0]), -float(middle[1]), float(middle[2]))  # RAS -> LPS
    return NiftiVolume(values=values, spacing=(float(zooms[2]), float(zooms[1]), float(zooms[0])), centre=centre)


def nifti_series(
    path: Path | str,
    *,
    series_description: str,
    series_number: int = 1,
    seed: int = 0,
    study_instance_uid: str | None = None,
    patient_id: str = "NIFTI-0001",
) -> list[Dataset]:
    """Write a NIfTI volume as an axial MR series (negative values clipped to 0).

    Parameters
    ----------
    path : Path or str
        The NIfTI file.
    series_description : str
        e.g. ``"FLAIR"`` or ``"T1 post Gd"`` (what routing and contrast detection read).
    series_number : int, optional
        SeriesNumber.
    seed : int, optional
        Seeds the UIDs.
    study_instance_uid : str or None, optional
        Put several series of one patient in one study.
    patient_id : str, optional
        PatientID (and PatientName) to write.

    Returns
    -------
    list[Dataset]
        One MR Image Storage instance per axial slice, BodyPartExamined BRAIN.
    """
    volume = read_nifti(path)
    grid = Grid(volume.values.shape, volume.spacing, AXIAL, volume.centre)  # type: ignore[arg-type]
    values = np.clip(volume.values, 0, None)
    return make_series(values, grid, modality="MR", seed=seed, series_number=series_number,
                       series_description=series_description, study_instance_uid=study_instance_uid,
                       patient_name=f"NIFTI^{patient_id}", patient_id=patient_id, body_part="BRAIN")
