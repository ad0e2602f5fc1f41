"""Weights: our checkpoint format, MONAI bundles, and the sha256 manifest that vouches for them.

A pipeline loads weights from a path an admin configures (``jobs.weights_dir``):

- a **checkpoint** file written by :func:`save_checkpoint` (a dict with ``format``,
  ``pipeline``, ``network_kwargs``, ``state_dict`` and ``meta``), or a bare ``state_dict``
  for the pipeline's default network;
- a **MONAI bundle** directory (``configs/inference.json`` or ``.yaml`` defining
  ``network_def``, and ``models/model.pt``), the layout of the MONAI model zoo.

Before anything is unpickled, the file's sha256 must be listed in a ``manifest.json``
beside it (for a bundle: in the bundle root or beside the bundle directory). A file that
is not listed, or whose hash differs, is refused with :class:`WeightsError` unless
verification is turned off (``jobs.verify_weights: false``). ``python -m
ai_pipelines.nn.weights add PATH`` lists a file an admin trusts.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain values only,
no arbitrary objects.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ai_pipelines.base import PipelineInputError
from ai_pipelines.provenance import file_sha256

__all__ = [
    "CHECKPOINT_FORMAT",
    "MANIFEST_NAME",
    "REFERENCE_DIR",
    "LoadedNetwork",
    "WeightsError",
    "load_network",
    "record_in_manifest",
    "save_checkpoint",
    "verify_weights",
    "weights_file",
]

CHECKPOINT_FORMAT = "dicomnode-weights/1"
MANIFEST_NAME = "manifest.json"
#: The reference weights this project trains itself (``ai_pipelines/<name>/train.py``).
REFERENCE_DIR = Path(__file__).resolve().parent.parent / "weights"

_BUNDLE_CONFIGS = ("configs/inference.json", "configs/inference.yaml", "configs/inference.yml")
_BUNDLE_MODEL = "models/model.pt"


class WeightsError(PipelineInputError):
    """The configured weights cannot be used (missing, unverified, or not this network's)."""


@dataclass(frozen=True, slots=True)
class LoadedNetwork:
    """A network with its weights loaded, in eval mode, on its device.

    Parameters
    ----------
    network : torch.nn.Module
        The network.
    sha256 : str
        Hash of the weights file that was loaded (a bundle's ``models/model.pt``).
    path : Path
        That file.
    meta : Mapping[str, Any]
        Training metadata from the checkpoint (empty for bare state dicts and bundles).
    """

    network: torch.nn.Module
    sha256: str
    path: Path
    meta: Mapping[str, Any] = field(default_factory=dict)


def weights_file(weights: Path) -> Path:
    """The file that holds the tensors: ``weights`` itself, or a bundle's ``models/model.pt``.

    Raises
    ------
    WeightsError
        If nothing is there.
    """
    weights = Path(weights)
    if weights.is_file():
        return weights
    if weights.is_dir():
        model = weights / _BUNDLE_MODEL
        if model.is_file():
            return model
        raise WeightsError(f"{weights} is a directory but not a MONAI bundle: {_BUNDLE_MODEL} is missing")
    raise WeightsError(
        f"no weights at {weights} (nor {weights}.pt); train them with the pipeline's train.py "
        "or point jobs.weights_dir at a folder holding <pipeline>.pt or a bundle <pipeline>/"
    )


def _manifests_for(weights: Path, tensors: Path) -> list[tuple[Path, str]]:
    """(manifest path, key) pairs that may vouch for ``tensors``, nearest first."""
    candidates = []
    if weights.is_dir():
        candidates.append((weights / MANIFEST_NAME, tensors.relative_to(weights).as_posix()))
    candidates.append((weights.parent / MANIFEST_NAME, tensors.relative_to(weights.parent).as_posix()))
    return candidates


def _read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path} is not a readable JSON manifest: {exc}") from exc
    if not isinstance(data, dict):
        raise WeightsError(f"{path} must map file names to entries with a sha256")
    return data


def verify_weights(weights: Path, *, verify: bool = True) -> tuple[Path, str]:
    """Find the tensors file of ``weights`` and check its sha256 against the manifest.

    Parameters
    ----------
    weights : Path
        Checkpoint file or bundle directory.
    verify : bool, optional
        False skips the manifest check (the hash is still computed, for provenance).

    Returns
    -------
    tuple[Path, str]
        The tensors file and its sha256.

    Raises
    ------
    WeightsError
        If the file is missing, not listed, or listed with another hash.
    """
    weights = Path(weights)
    tensors = weights_file(weights)
    sha = file_sha256(tensors)
    if not verify:
        return tensors, sha
    looked = []
    for manifest, key in _manifests_for(weights, tensors):
        entry = _read_manifest(manifest).get(key)
        looked.append(str(manifest))
        if entry is None:
            continue
        if entry.get("sha256") != sha:
            raise WeightsError(
                f"{tensors} has sha256 {sha}, but {manifest} lists {entry.get('sha256')}: the file "
                "changed after it was vouched for; restore it, or re-list it with "
                f"`python -m ai_pipelines.nn.weights add {tensors}` if the change is intended"
            )
        return tensors, sha
    raise WeightsError(
        f"{tensors} (sha256 {sha}) is not listed in {' or '.join(looked)}; list it with "
        f"`python -m ai_pipelines.nn.weights add {tensors}`, or set jobs.verify_weights: false "
        "to load unverified weights"
    )


def load_network(
    weights: Path,
    build: Callable[[Mapping[str, Any]], torch.nn.Module],
    *,
    pipeline: str,
    device: torch.device,
    verify: bool = True,
) -> LoadedNetwork:
    """Load a checkpoint or MONAI bundle into a network in eval mode.

    Parameters
    ----------
    weights : Path
        Checkpoint file or bundle directory.
    build : Callable[[Mapping[str, Any]], torch.nn.Module]
        Makes the pipeline's network from keyword overrides (a checkpoint's
        ``network_kwargs``; empty for a bare state dict).
    pipeline : str
        Pipeline name; a checkpoint made for another pipeline is refused.
    device : torch.device
        Where the network runs.
    verify : bool, optional
        Check the manifest first (see :func:`verify_weights`).

    Returns
    -------
    LoadedNetwork
        The network, the hash and path of its weights, and the checkpoint's metadata.

    Raises
    ------
    WeightsError
        If the weights are missing, unverified, or do not fit the network.
    """
    weights = Path(weights)
    tensors, sha = verify_weights(weights, verify=verify)
    meta: Mapping[str, Any] = {}
    if weights.is_dir():
        network = _bundle_network(weights)
        state = _torch_load(tensors)
    else:
        loaded = _torch_load(tensors)
        if isinstance(loaded, dict) and loaded.get("format") == CHECKPOINT_FORMAT:
            if loaded.get("pipeline") != pipeline:
                raise WeightsError(f"{tensors} holds weights for {loaded.get('pipeline')!r}, not {pipeline!r}")
            network = build(dict(loaded.get("network_kwargs") or {}))
            state = loaded["state_dict"]
            meta = dict(loaded.get("meta") or {})
        else:
            network = build({})
            state = loaded
    if not isinstance(state, Mapping):
        raise WeightsError(f"{tensors} holds no state dict")
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(f"{tensors} does not fit the {pipeline} network: {first}") from exc
    network.to(device).eval()
    return LoadedNetwork(network=network, sha256=sha, path=tensors, meta=meta)


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise WeightsError(f"{path} is not a readable torch checkpoint: {type(exc).__name__}: {exc}") from exc


def _bundle_network(bundle: Path) -> torch.nn.Module:
    from monai.bundle import ConfigParser

    config = next((bundle / name for name in _BUNDLE_CONFIGS if (bundle / name).is_file()), None)
    if config is None:
        raise WeightsError(f"bundle {bundle} has no {' or '.join(_BUNDLE_CONFIGS)}")
    parser = ConfigParser()
    parser.read_config(str(config))
    parser["bundle_root"] = str(bundle)
    if "network_def" not in parser.config:
        raise WeightsError(f"{config} defines no network_def")
    network = parser.get_parsed_content("network_def")
    if not isinstance(network, torch.nn.Module):
        raise WeightsError(f"{config}: network_def is not a torch module")
    return network


def save_checkpoint(
    path: Path,
    network: torch.nn.Module,
    *,
    pipeline: str,
    network_kwargs: Mapping[str, Any],
    meta: Mapping[str, Any],
) -> str:
    """Write a checkpoint :func:`load_network` reads, atomically; return its sha256.

    Parameters
    ----------
    path : Path
        Target file (``<name>.pt``).
    network : torch.nn.Module
        Trained network (its state dict is saved in float32 on CPU).
    pipeline : str
        Pipeline name the weights are for.
    network_kwargs : Mapping[str, Any]
        Plain values the pipeline's builder needs to make this network.
    meta : Mapping[str, Any]
        Plain training metadata: seed, steps, data description, losses.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().to("cpu", torch.float32) if value.is_floating_point() else value.detach().cpu()
             for key, value in network.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "pipeline": pipeline, "network_kwargs": dict(network_kwargs),
               "state_dict": state, "meta": dict(meta)}
    temp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, temp)
    os.replace(temp, path)
    return file_sha256(path)


def record_in_manifest(path: Path, *, manifest_dir: Path | None = None, **entry: Any) -> str:
    """List ``path`` with its sha256 (and ``entry``) in ``manifest.json``; return the sha256.

    The manifest is the one in ``manifest_dir`` (by default the file's folder; a bundle's
    root for its ``models/model.pt``). Safe against concurrent writers (an exclusive lock).
    """
    path = Path(path).resolve()
    folder = path.parent if manifest_dir is None else Path(manifest_dir).resolve()
    manifest = folder / MANIFEST_NAME
    sha = file_sha256(path)
    with open(manifest.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _read_manifest(manifest)
        data[path.relative_to(folder).as_posix()] = {"sha256": sha, "bytes": path.stat().st_size, **entry}
        temp = manifest.with_name(f".{manifest.name}.tmp")
        temp.write_text(json.dumps(dict(sorted(data.items())), indent=2, sort_keys=True) + "\n")
        os.replace(temp, manifest)
    return sha


def main(argv: list[str] | None = None) -> int:
    """``python -m ai_pipelines.nn.weights add|check PATH``: vouch for or check a weights file."""
    parser = argparse.ArgumentParser(prog="python -m ai_pipelines.nn.weights", description=main.__doc__)
    parser.add_argument("action", choices=["add", "check"],
                        help="add: list PATH's sha256 in the manifest.json beside it; check: verify it")
    parser.add_argument("path", type=Path, help="checkpoint file or MONAI bundle directory")
    args = parser.parse_args(argv)
    try:
        if args.action == "add":
            tensors = weights_file(args.path)
            folder = args.path if args.path.is_dir() else None
            print(f"{record_in_manifest(tensors, manifest_dir=folder, source='added by an admin')}  {tensors}")
        else:
            tensors, sha = verify_weights(args.path)
            print(f"{sha}  {tensors}  OK")
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
