"""AlgorithmInfo: validated, immutable, hashable; file_sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydicom.sr.codedict import codes

from ai_pipelines.provenance import AlgorithmInfo, file_sha256


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(b"x" * 3_000_000)
    assert file_sha256(path, chunk_size=1 << 16) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_algorithm_info_defaults_and_parameters() -> None:
    info = AlgorithmInfo("lung_nodules", "1.0", parameters={"b": 2, "a": True})
    assert info.family == codes.cid7162.ArtificialIntelligence
    assert list(info.parameters) == ["a", "b"]
    assert info.parameter_strings == {"a": "True", "b": "2"}
    with pytest.raises(TypeError):
        info.parameters["c"] = 1  # type: ignore[index]
    assert hash(info) == hash(AlgorithmInfo("lung_nodules", "1.0", parameters={"a": True, "b": 2}))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": ""}, ValueError, "name"),
        ({"name": "a\\b"}, ValueError, "LO"),
        ({"version": "x" * 65}, ValueError, "version"),
        ({"weights_sha256": "ABC"}, ValueError, "weights_sha256"),
        ({"parameters": {"t": [1, 2]}}, TypeError, "parameters"),
        ({"parameters": {"": 1}}, ValueError, "key"),
        ({"family": "AI"}, TypeError, "family"),
    ],
)
def test_algorithm_info_cannot_be_built_invalid(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    values: dict[str, object] = {"name": "n", "version": "1"}
    values.update(kwargs)
    with pytest.raises(error, match=message):
        AlgorithmInfo(**values)  # type: ignore[arg-type]
