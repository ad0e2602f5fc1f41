"""load_volume on real scanner files: pydicom's bundled data and ../shared/data/dicom."""

from __future__ import annotations

import struct
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from ai_pipelines.base import PipelineInputError, SeriesInput
from ai_pipelines.frames import FrameRef
from ai_pipelines.volume import load_volume


def _testdata(name: str) -> Dataset:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed (pydicom-data)")
    return pydicom.dcmread(path)


def _testdata_dir(relative: str) -> list[Dataset]:
    anchor = get_testdata_file("CT_small.dcm", download=False)
    assert anchor is not None
    folder = Path(anchor).parent / relative
    return [pydicom.dcmread(path) for path in sorted(folder.iterdir())]


def test_real_ct_slices_are_sorted_by_position_against_instance_number() -> None:
    datasets = _testdata_dir("dicomdirtests/98892001/CT5N")  # InstanceNumber falls as z rises
    volume = load_volume(SeriesInput(datasets))
    assert volume.shape == (5, 16, 16)
    assert volume.spacing == pytest.approx((2.5, 0.488281, 0.488281))
    by_z = sorted(datasets, key=lambda ds: float(ds.ImagePositionPatient[2]))
    assert [s.sop_instance_uid for s in volume.sources] == [ds.SOPInstanceUID for ds in by_z]
    assert [int(ds.InstanceNumber) for ds in by_z] == [10, 9, 8, 7, 6]
    expected = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
                         for ds in by_z])
    assert np.array_equal(volume.array, expected)


def test_real_ct_with_missing_slices_is_refused() -> None:
    datasets = _testdata_dir("dicomdirtests/77654033/CT2")  # slices 18, 180, 181, 182
    with pytest.raises(PipelineInputError, match="missing slices: 161 slice"):
        load_volume(datasets)


def test_real_radial_mr_is_refused_for_mixed_orientation() -> None:
    datasets = _testdata_dir("dicomdirtests/98892003/MR700")
    with pytest.raises(PipelineInputError, match="mixed orientation: 6 of 7 slices"):
        load_volume(datasets)


@pytest.mark.parametrize(
    "name",
    ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
     "MR_small_bigendian.dcm", "MR_small_implicit.dcm"],
)
def test_compressed_and_other_transfer_syntaxes_decode_to_the_same_volume(name: str) -> None:
    reference = load_volume([_testdata("MR_small.dcm")])
    volume = load_volume([_testdata(name)])
    assert np.array_equal(volume.array, reference.array)
    assert np.allclose(volume.affine, reference.affine)


def test_jpeg2000_ct_decodes_to_the_uncompressed_values() -> None:
    compressed, plain = _testdata("693_J2KR.dcm"), _testdata("693_UNCR.dcm")
    with pytest.raises(PipelineInputError, match="lack FrameOfReferenceUID"):
        load_volume([plain])  # these files omit a type 1 attribute; supply one to go on
    for ds in (compressed, plain):
        ds.FrameOfReferenceUID = "1.2.3.4"
    assert np.array_equal(load_volume([compressed]).array, load_volume([plain]).array)


def test_enhanced_ct_frames_take_geometry_and_rescale_from_functional_groups() -> None:
    ds = _testdata("eCT_Supplemental.dcm")
    volume = load_volume([ds])
    assert volume.shape == (2, 512, 512)
    assert volume.spacing == pytest.approx((10.0, 0.388672, 0.388672))
    # rows run right to left, so row x column points to the feet: frame 2 (z -149) comes first
    assert volume.origin == pytest.approx((99.5, -301.5, -149.0))
    assert volume.direction[0] == pytest.approx((0.0, 0.0, -1.0))
    assert volume.sources == (
        FrameRef(ds.SOPClassUID, ds.SOPInstanceUID, 2),
        FrameRef(ds.SOPClassUID, ds.SOPInstanceUID, 1),
    )
    assert np.array_equal(volume.array[0], ds.pixel_array[1].astype(np.float32) - 1024)
    assert volume.window == (49.0, 102.0)


def test_enhanced_ct_from_a_legacy_conversion_equals_the_single_frame_series(
    ct_series: SeriesInput,
) -> None:
    ordered = sorted(ct_series.datasets, key=lambda ds: int(ds.InstanceNumber))
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=ordered[::-1], series_instance_uid=hd.UID(), series_number=99,
        sop_instance_uid=hd.UID(), instance_number=1,
    )
    volume = load_volume([enhanced])
    reference = load_volume(ct_series)
    assert np.array_equal(volume.array, reference.array)
    assert np.allclose(volume.affine, reference.affine)
    assert [s.frame_number for s in volume.sources] == list(range(12, 0, -1))


def test_multiframe_without_functional_groups_is_refused() -> None:
    with pytest.raises(PipelineInputError, match="10 frames but no functional groups"):
        load_volume([_testdata("emri_small.dcm")])


def _orientation_series(shared_data: Path, folder: str) -> list[Dataset]:
    paths = sorted((shared_data / "dicom" / "dcm_qa_orientation" / folder).glob("MR*"))
    paths += sorted((shared_data / "dicom" / "dcm_qa_orientation" / folder).glob("*.dcm"))
    return [pydicom.dcmread(path) for path in paths]


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first volume and the sform (voxel -> RAS mm) of a NIfTI-1 file, read with numpy."""
    data = path.read_bytes()
    dims = struct.unpack_from("<8h", data, 40)
    datatype = struct.unpack_from("<h", data, 70)[0]
    offset = int(struct.unpack_from("<f", data, 108)[0])
    dtype = {4: "<i2", 512: "<u2"}[datatype]
    shape = dims[1:1 + dims[0]]
    image = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=offset)
    image = image.reshape(shape[::-1])  # (t, k, j, i)
    sform = np.vstack([np.array(struct.unpack_from("<4f", data, 280 + 16 * r)) for r in range(3)]
                      + [np.array([0.0, 0.0, 0.0, 1.0])])
    return image[0], sform


def test_siemens_mosaic_matches_dcm2niix(shared_data: Path) -> None:
    """The mosaic's tiles land where dcm2niix put them (its NIfTI ships with the data)."""
    datasets = _orientation_series(shared_data, "ax/axasc35")
    volume = load_volume([datasets[0]])
    assert volume.shape == (35, 64, 64)
    image, sform = _read_nifti(shared_data / "dicom/dcm_qa_orientation/ax/axasc35/6_ax_asc_35sl.nii")
    k, j, i = np.meshgrid(*(np.arange(n) for n in volume.shape), indexing="ij")
    indices = np.stack([k, j, i], -1).reshape(-1, 3)
    ras = volume.index_to_patient(indices) * np.array([-1.0, -1.0, 1.0])
    voxel = np.c_[ras, np.ones(len(ras))] @ np.linalg.inv(sform).T
    assert np.abs(voxel[:, :3] - np.rint(voxel[:, :3])).max() < 1e-3
    ii, jj, kk = np.rint(voxel[:, :3]).astype(int).T
    assert np.array_equal(volume.array.reshape(-1), image[kk, jj, ii].astype(np.float32))


@pytest.mark.parametrize("plane", ["ax", "cor", "sag"])
def test_acquisition_order_does_not_change_the_geometry(shared_data: Path, plane: str) -> None:
    volumes = [load_volume([_orientation_series(shared_data, f"{plane}/{plane}{order}35")[0]])
               for order in ("asc", "desc", "int")]
    for volume in volumes[1:]:
        assert np.allclose(volume.affine, volumes[0].affine, atol=1e-4)
    z = [volumes[0].slice_position(k) for k in range(volumes[0].shape[0])]
    assert np.all(np.diff(np.array(z) @ np.array(volumes[0].direction[0])) > 0)


@pytest.mark.parametrize("folder", ["axmb/AxAsc36mb2a", "axmb/AxInt36mb"])
def test_compressed_multiband_mosaics_decode(shared_data: Path, folder: str) -> None:
    volume = load_volume([_orientation_series(shared_data, folder)[0]])
    assert volume.shape == (36, 86, 86)
    assert volume.array.max() > 0


def test_two_time_points_in_one_series_are_refused(shared_data: Path) -> None:
    with pytest.raises(PipelineInputError, match="70 slices at only 35 distinct positions"):
        load_volume(_orientation_series(shared_data, "ax/axasc35"))
