"""Weights: the manifest vouches for a file before it is read; checkpoints, bare state dicts, bundles."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from monai.networks.nets import UNet

from ai_pipelines.nn import weights
from ai_pipelines.nn.weights import WeightsError, load_network, record_in_manifest, save_checkpoint

CPU = torch.device("cpu")


def _build(overrides: Mapping[str, Any]) -> torch.nn.Module:
    kwargs: dict[str, Any] = {"channels": (4, 8), "strides": (2,)} | dict(overrides)
    return UNet(spatial_dims=2, in_channels=1, out_channels=1, **kwargs)


def _trained(tmp_path: Path, name: str = "toy.pt", **kwargs: Any) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(3)
    network = _build(kwargs)
    path = tmp_path / name
    save_checkpoint(path, network, pipeline="toy", network_kwargs=kwargs, meta={"seed": 3})
    return path, network


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_unlisted_weights_are_refused_before_loading(tmp_path: Path) -> None:
    path, _ = _trained(tmp_path)
    with pytest.raises(WeightsError, match="not listed in .*manifest.json.*verify_weights: false"):
        load_network(path, _build, pipeline="toy", device=CPU)


def test_listed_weights_load_with_their_hash_and_meta(tmp_path: Path) -> None:
    path, network = _trained(tmp_path)
    sha = record_in_manifest(path, made_by="test")
    loaded = load_network(path, _build, pipeline="toy", device=CPU)
    assert loaded.sha256 == sha
    assert loaded.meta == {"seed": 3}
    assert not loaded.network.training
    assert _same_weights(loaded.network, network)
    entry = json.loads((tmp_path / "manifest.json").read_text())["toy.pt"]
    assert entry["sha256"] == sha and entry["made_by"] == "test" and entry["bytes"] == path.stat().st_size


def test_changed_file_is_refused_naming_both_hashes(tmp_path: Path) -> None:
    path, _ = _trained(tmp_path)
    listed = record_in_manifest(path)
    with path.open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(WeightsError, match=f"lists {listed}"):
        load_network(path, _build, pipeline="toy", device=CPU)


def test_verification_can_be_turned_off_and_the_hash_is_still_reported(tmp_path: Path) -> None:
    path, _ = _trained(tmp_path)
    loaded = load_network(path, _build, pipeline="toy", device=CPU, verify=False)
    assert len(loaded.sha256) == 64


def test_checkpoint_network_kwargs_rebuild_a_different_size(tmp_path: Path) -> None:
    path, network = _trained(tmp_path, channels=(8, 16))
    record_in_manifest(path)
    loaded = load_network(path, _build, pipeline="toy", device=CPU)
    assert _same_weights(loaded.network, network)


def test_checkpoint_for_another_pipeline_is_refused(tmp_path: Path) -> None:
    path, _ = _trained(tmp_path)
    record_in_manifest(path)
    with pytest.raises(WeightsError, match="for 'toy', not 'other'"):
        load_network(path, _build, pipeline="other", device=CPU)


def test_bare_state_dict_loads_into_the_default_network(tmp_path: Path) -> None:
    network = _build({})
    path = tmp_path / "plain.pt"
    torch.save(network.state_dict(), path)
    record_in_manifest(path)
    assert _same_weights(load_network(path, _build, pipeline="toy", device=CPU).network, network)


def test_state_dict_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wrong.pt"
    torch.save(_build({"channels": (8, 16)}).state_dict(), path)
    record_in_manifest(path)
    with pytest.raises(WeightsError, match="does not fit the toy network"):
        load_network(path, _build, pipeline="toy", device=CPU)


def test_garbage_file_is_refused_not_crashed_on(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint")
    record_in_manifest(path)
    with pytest.raises(WeightsError, match="not a readable torch checkpoint"):
        load_network(path, _build, pipeline="toy", device=CPU)


def test_missing_weights_name_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no weights at .*train.py"):
        load_network(tmp_path / "absent", _build, pipeline="toy", device=CPU)


def test_monai_bundle_is_built_from_its_config(tmp_path: Path) -> None:
    bundle = tmp_path / "toy"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.json").write_text(json.dumps({
        "network_def": {"_target_": "monai.networks.nets.UNet", "spatial_dims": 2, "in_channels": 1,
                        "out_channels": 1, "channels": [4, 8], "strides": [2]},
    }))
    network = _build({})
    torch.save(network.state_dict(), bundle / "models" / "model.pt")
    assert weights.main(["add", str(bundle)]) == 0
    assert "models/model.pt" in json.loads((bundle / "manifest.json").read_text())
    loaded = load_network(bundle, _build, pipeline="toy", device=CPU)
    assert loaded.path == bundle / "models" / "model.pt"
    assert _same_weights(loaded.network, network)


def test_directory_without_model_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "toy").mkdir()
    with pytest.raises(WeightsError, match="not a MONAI bundle"):
        load_network(tmp_path / "toy", _build, pipeline="toy", device=CPU)


def test_reference_manifest_vouches_for_every_committed_weights_file() -> None:
    listed = json.loads((weights.REFERENCE_DIR / "manifest.json").read_text())
    for path in sorted(weights.REFERENCE_DIR.glob("*.pt")):
        assert path.name in listed, f"{path.name} is committed but not in the manifest"
        weights.verify_weights(path)
