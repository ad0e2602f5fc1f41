"""python -m ai_pipelines.denoise.train: a few steps into a temporary folder, loadable and vouched for."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ai_pipelines.denoise.model import ResidualDenoiser, build_denoiser
from ai_pipelines.denoise.train import main
from ai_pipelines.nn.weights import load_network


@pytest.fixture
def torch_globals() -> Iterator[None]:
    """train() sets torch's thread count and deterministic mode for the process: put them back."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@pytest.mark.slow
@pytest.mark.usefixtures("torch_globals")
def test_a_short_run_saves_a_checkpoint_listed_in_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "denoise.pt"
    assert main(["--steps", "2", "--limit", "2", "--threads", "1", "--seed", "3", "--out", str(out),
                 "--no-progress"]) == 0
    assert "sha256" in capsys.readouterr().out
    entry = json.loads((tmp_path / "manifest.json").read_text())["denoise.pt"]
    assert entry["steps"] == 2 and entry["seed"] == 3 and entry["pipeline"] == "denoise"
    loaded = load_network(out, build_denoiser, pipeline="denoise", device=torch.device("cpu"))
    assert isinstance(loaded.network, ResidualDenoiser) and loaded.sha256 == entry["sha256"]
    assert loaded.meta["steps"] == 2 and "--steps 2" in loaded.meta["command"]
    assert loaded.meta["final_l1"] > 0 and "held-out" in loaded.meta["data"]


def test_refuses_zero_steps() -> None:
    with pytest.raises(SystemExit):
        main(["--steps", "0"])
