"""synth_ct train.py: a few steps write a loadable, manifest-listed, reproducible checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ai_pipelines.nn.device import torch_device
from ai_pipelines.nn.weights import load_network
from ai_pipelines.synth_ct import train
from ai_pipelines.synth_ct.model import build_generator
from ai_pipelines.synthetic import anatomy


@pytest.fixture(autouse=True)
def _anatomy() -> None:
    try:
        anatomy.head_ct()
        anatomy.abdomen_ct()
    except anatomy.AnatomyUnavailable as exc:
        pytest.skip(str(exc))


def _run(out: Path, seed: int) -> None:
    argv = ["--steps", "2", "--seed", str(seed), "--threads", "1", "--batch", "2", "--out", str(out), "--no-progress"]
    assert train.main(argv) == 0


@pytest.mark.slow
def test_train_writes_a_listed_reproducible_checkpoint(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "synth_ct.pt", tmp_path / "b" / "synth_ct.pt"
    _run(first, seed=3)
    _run(second, seed=3)
    manifest = json.loads((first.parent / "manifest.json").read_text())
    entry = manifest["synth_ct.pt"]
    assert entry["steps"] == 2 and entry["seed"] == 3 and "derived from real CT" in entry["data"]
    loaded = load_network(first, build_generator, pipeline="synth_ct", device=torch_device("cpu"))
    assert loaded.sha256 == entry["sha256"]
    assert loaded.meta["steps"] == 2 and loaded.meta["final_l1"] > 0
    assert "not real MR" in loaded.meta["data"]
    again = load_network(second, build_generator, pipeline="synth_ct", device=torch_device("cpu"))
    for key, value in loaded.network.state_dict().items():
        torch.testing.assert_close(value, again.network.state_dict()[key], rtol=0, atol=0)


def test_train_refuses_zero_steps(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        train.main(["--steps", "0", "--out", str(tmp_path / "x.pt")])
