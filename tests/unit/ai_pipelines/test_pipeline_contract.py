"""The Pipeline contract: declarations checked at class definition, inputs validated at construction."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes

from ai_pipelines import writers
from ai_pipelines.base import (
    Finding,
    InputSpec,
    OutputKind,
    Pipeline,
    PipelineInputError,
    PipelineResult,
    SeriesInput,
)
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.synthetic.series import synthetic_ct
from ai_pipelines.volume import load_volume


class ThresholdPipeline(Pipeline):
    """A toy pipeline: segments bone (HU > 300) and reports it; shows the contract end to end."""

    name: ClassVar[str] = "bone_threshold"
    version: ClassVar[str] = "0.1"
    accepts: ClassVar[InputSpec] = InputSpec(modalities={"CT"}, min_slices=4)
    produces: ClassVar[frozenset[OutputKind]] = frozenset({OutputKind.SEG})

    def run(self, series: SeriesInput, *, algorithm: AlgorithmInfo) -> PipelineResult:
        self.accepts.check(series)
        volume = load_volume(series)
        segment = writers.Segment("bone", codes.SCT.Tissue, codes.SCT.Bone, volume.array > 300)
        seg = writers.write_seg(series, volume, [segment], algorithm=algorithm)
        return PipelineResult(datasets=(seg,))


def test_a_pipeline_runs_on_a_synthetic_series(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"not really weights")
    pipeline = ThresholdPipeline(weights)
    algorithm = pipeline.algorithm_info({"threshold": 300})
    assert algorithm.weights_sha256 == hashlib.sha256(b"not really weights").hexdigest()
    result = pipeline.run(SeriesInput(synthetic_ct()), algorithm=algorithm)
    assert [ds.Modality for ds in result.datasets] == ["SEG"]
    assert result.findings == ()


def test_a_pipeline_refuses_too_few_slices() -> None:
    pipeline = ThresholdPipeline(Path("none"))
    series = SeriesInput(synthetic_ct(shape=(3, 16, 16)))
    with pytest.raises(PipelineInputError, match=r"^3 slices; needs >= 4$"):
        pipeline.run(series, algorithm=pipeline.algorithm_info())


def test_weights_are_required_unless_a_pipeline_declares_otherwise() -> None:
    with pytest.raises(ValueError, match="pipeline 'bone_threshold' needs weights"):
        ThresholdPipeline()

    class NoWeights(ThresholdPipeline):
        name = "no_weights"
        weights_required = False

    pipeline = NoWeights()
    assert pipeline.weights is None
    assert pipeline.algorithm_info({"threshold": 300}).weights_sha256 is None
    assert NoWeights(Path("ignored")).weights == Path("ignored")
    with pytest.raises(TypeError, match="weights_required must be a bool"):
        type("Odd", (ThresholdPipeline,), {"name": "odd", "weights_required": "no"})


def test_device_is_validated() -> None:
    assert ThresholdPipeline(Path("w"), device="cuda:1").device == "cuda:1"
    with pytest.raises(ValueError, match="device"):
        ThresholdPipeline(Path("w"), device="gpu")


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"name": "Bad Name"}, "lower_snake_case"),
        ({"version": ""}, "version"),
        ({"accepts": {"modalities": ["CT"]}}, "InputSpec"),
        ({"produces": frozenset({"SEG"})}, "OutputKind"),
        ({"produces": frozenset()}, "OutputKind"),
    ],
)
def test_declarations_are_checked_when_the_class_is_defined(
    attributes: dict[str, object], message: str
) -> None:
    body: dict[str, object] = {
        "name": "ok", "version": "1", "accepts": InputSpec(modalities={"MR"}),
        "produces": frozenset({OutputKind.SR}),
        "run": lambda self, series, *, algorithm: PipelineResult(()),
    }
    body.update(attributes)
    with pytest.raises(TypeError, match=message):
        type("Broken", (Pipeline,), body)


def test_a_partial_declaration_is_refused_but_an_intermediate_base_is_fine() -> None:
    class Base(Pipeline):  # declares nothing: fine
        pass

    with pytest.raises(TypeError, match="does not declare accepts, produces"):
        type("Half", (Base,), {"name": "half", "version": "1"})


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"modalities": set()}, ValueError, "at least one"),
        ({"modalities": {"ct"}}, ValueError, "code string"),
        ({"modalities": "CT"}, TypeError, "not a string"),
        ({"modalities": {"CT"}, "required_tags": {"NotAKeyword"}}, ValueError, "NotAKeyword"),
        ({"modalities": {"CT"}, "min_slices": 0}, ValueError, "min_slices"),
        ({"modalities": {"CT"}, "min_slices": 5, "max_slices": 4}, ValueError, "max_slices=4"),
    ],
)
def test_input_spec_cannot_be_built_invalid(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        InputSpec(**kwargs)  # type: ignore[arg-type]


def test_input_spec_check_names_what_is_missing() -> None:
    series = SeriesInput(synthetic_ct(shape=(4, 16, 16)))
    InputSpec(modalities=["CT"], max_slices=4, required_tags=["KVP"]).check(series)
    with pytest.raises(PipelineInputError, match="modality 'CT'; needs one of MR"):
        InputSpec(modalities={"MR"}).check(series)
    with pytest.raises(PipelineInputError, match="4 slices; needs <= 2"):
        InputSpec(modalities={"CT"}, max_slices=2).check(series)
    with pytest.raises(PipelineInputError, match="lacks EchoTime"):
        InputSpec(modalities={"CT"}, required_tags={"EchoTime"}).check(series)


def test_series_input_refuses_bad_instances() -> None:
    datasets = synthetic_ct(shape=(3, 8, 8))
    with pytest.raises(ValueError, match="at least one"):
        SeriesInput(())
    with pytest.raises(TypeError, match="pydicom Datasets"):
        SeriesInput(("not a dataset",))  # type: ignore[arg-type]
    with pytest.raises(PipelineInputError, match="the same SOPInstanceUID"):
        SeriesInput((datasets[0], datasets[0]))
    other = synthetic_ct(shape=(3, 8, 8), seed=9)
    with pytest.raises(PipelineInputError, match="2 series"):
        SeriesInput((datasets[0], other[0]))
    datasets[1].SeriesInstanceUID = ""
    with pytest.raises(PipelineInputError, match="instance 1 has an empty or invalid SeriesInst"):
        SeriesInput(datasets)


def test_series_input_refuses_the_real_files_with_blanked_uids(shared_data: Path) -> None:
    paths = sorted((shared_data / "dicom" / "totalseg_example_ct").iterdir())[:2]
    with pytest.raises(PipelineInputError, match="empty or invalid StudyInstanceUID"):
        SeriesInput.from_paths(paths)


def test_series_input_counts_frames() -> None:
    enhanced = pydicom.dcmread(get_testdata_file("eCT_Supplemental.dcm", download=False))
    series = SeriesInput([enhanced])
    assert series.number_of_frames == 2
    assert series.modality == "CT"
    assert series.series_instance_uid == enhanced.SeriesInstanceUID


def test_finding_is_validated() -> None:
    finding = Finding("nodule 1", "1.2.3", codes.SCT.Nodule, (1, 2, np.float32(3.5)),
                      probability=0.5)
    assert finding.centre == (1.0, 2.0, 3.5)
    for kwargs, message in [
        ({"probability": 1.5}, "probability"),
        ({"volume_mm3": -1.0}, "volume_mm3"),
        ({"diameter_mm": float("nan")}, "diameter_mm"),
        ({"tracking_uid": "1.02"}, "tracking_uid"),
        ({"centre": (1.0, 2.0)}, "centre"),
        ({"segment_number": 0}, "segment_number"),
    ]:
        values: dict[str, object] = {
            "tracking_identifier": "n", "tracking_uid": "1.2.3",
            "finding_type": codes.SCT.Nodule, "centre": (0, 0, 0),
        }
        values.update(kwargs)
        with pytest.raises(ValueError, match=message):
            Finding(**values)  # type: ignore[arg-type]


def test_pipeline_result_refuses_repeated_outputs() -> None:
    ds = synthetic_ct(shape=(1, 8, 8))[0]
    with pytest.raises(ValueError, match="repeat"):
        PipelineResult(datasets=(ds, ds))
    with pytest.raises(TypeError, match="Finding"):
        PipelineResult(datasets=(ds,), findings=("nodule",))  # type: ignore[arg-type]


def test_pipeline_input_error_has_a_default_message() -> None:
    assert str(PipelineInputError()) == PipelineInputError.__doc__
    assert PipelineInputError("12 slices; needs >= 32").reason == "12 slices; needs >= 32"
