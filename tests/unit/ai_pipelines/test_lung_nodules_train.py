"""lung_nodules train.py: a few steps into a temporary folder give loadable, listed weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ai_pipelines.lung_nodules import train
from ai_pipelines.lung_nodules.pipeline import LungNodules
from ai_pipelines.nn.weights import load_network


def test_train_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "lung_nodules.pt"
    assert train.main(["--steps", "2", "--seed", "3", "--threads", "1", "--out", str(out), "--quiet",
                       "--calibration-scans", "1"]) == 0
    entry = json.loads((tmp_path / "manifest.json").read_text())["lung_nodules.pt"]
    assert entry["steps"] == 2 and entry["seed"] == 3 and entry["pipeline"] == "lung_nodules"
    assert "LIDC-IDRI" in entry["data"] and entry["final_loss"] > 0
    loaded = load_network(out, LungNodules.build_network, pipeline="lung_nodules", device=torch.device("cpu"))
    assert loaded.sha256 == entry["sha256"] and loaded.meta["steps"] == 2
    # two steps rarely rank a nodule first; a fit that cannot be made leaves the checkpoint uncalibrated
    assert loaded.meta.get("calibration", {"scans": 1})["scans"] == 1
