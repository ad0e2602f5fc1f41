"""TorchPipeline: a Pipeline that loads its network once, verified, on its device."""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ai_pipelines.base import Pipeline
from ai_pipelines.nn.device import torch_device
from ai_pipelines.nn.weights import LoadedNetwork, load_network, verify_weights
from ai_pipelines.provenance import AlgorithmInfo, ParameterValue

__all__ = ["TorchPipeline"]


class TorchPipeline(Pipeline):
    """Base class for pipelines that run a torch network.

    Subclasses implement :meth:`build_network` (the default architecture, with keyword
    overrides a checkpoint may carry) and :meth:`run`, which calls :meth:`loaded` for the
    network. Weights are verified against the manifest (see :mod:`ai_pipelines.nn.weights`)
    before they are read, unless ``verify_weights`` is False.

    Parameters
    ----------
    weights : Path or None
        Checkpoint file or MONAI bundle directory.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    verify_weights : bool, optional
        Refuse weights the manifest does not vouch for (default True).
    """

    def __init__(self, weights: Path | None = None, device: str = "cpu", *, verify_weights: bool = True) -> None:
        super().__init__(weights, device, verify_weights=verify_weights)
        self._loaded: LoadedNetwork | None = None
        self._lock = threading.Lock()
        self._last_forward: tuple[tuple[Any, ...], dict[str, Any]] | None = None

    @classmethod
    @abstractmethod
    def build_network(cls, overrides: Mapping[str, Any]) -> torch.nn.Module:
        """Make the untrained network; ``overrides`` are keyword arguments from a checkpoint."""

    @property
    def torch_device(self) -> torch.device:
        """The torch device this pipeline runs on."""
        return torch_device(self.device)

    def loaded(self) -> LoadedNetwork:
        """The network with its weights, loaded on first use (thread-safe)."""
        with self._lock:
            if self._loaded is None:
                assert self.weights is not None  # checked by Pipeline.__init__
                self._loaded = load_network(
                    self.weights, self.build_network, pipeline=self.name,
                    device=self.torch_device, verify=self.verify_weights,
                )
            return self._loaded

    @abstractmethod
    def forward_only(self, *args: Any, **kwargs: Any) -> Any:
        """The bare network on an already pre-processed input (no decoding, resampling or writing)."""

    def remember_forward_input(self, *args: Any, **kwargs: Any) -> None:
        """Keep the arguments :meth:`run` gave :meth:`forward_only`, for :meth:`bare_forward`."""
        self._last_forward = (args, kwargs)

    def bare_forward(self) -> Any:
        """:meth:`forward_only` again on the input of the last :meth:`run` (what the bench compares with).

        Raises
        ------
        RuntimeError
            If no run has remembered its input yet.
        """
        if self._last_forward is None:
            raise RuntimeError(f"{self.name}: bare_forward() needs a run() first")
        args, kwargs = self._last_forward
        return self.forward_only(*args, **kwargs)

    def algorithm_info(self, parameters: Mapping[str, ParameterValue] | None = None) -> AlgorithmInfo:
        """As :meth:`Pipeline.algorithm_info`, hashing a bundle's ``models/model.pt`` too."""
        assert self.weights is not None
        _, sha = verify_weights(self.weights, verify=self.verify_weights)
        return AlgorithmInfo(name=self.name, version=self.version, weights_sha256=sha,
                             parameters=dict(parameters or {}))
