"""Denoise: a noisy or low-dose CT or MR series in, an "AI denoised" derived series out.

The network (:mod:`ai_pipelines.denoise.model`) is a residual 2D MONAI UNet trained with L1 +
PatchGAN adversarial loss (:mod:`ai_pipelines.denoise.train`) on simulated low-dose CT and
undersampled, Rician-noisy MR made from real anatomy. It runs on every slice of the series, in
batches (float16 autocast on CUDA), at the series' own pixel grid.

The output is a new series in the same study and Frame of Reference, slice for slice on the
source's geometry (:func:`~ai_pipelines.writers.write_derived_series`): CT Image Storage in
HU for CT, MR Image Storage for MR, ImageType DERIVED\\SECONDARY, SeriesDescription
"AI denoised", a DerivationDescription naming the model and its weights, SourceImageSequence
per slice, the source's window, and "AI" burned into a corner.

Parameters (``AlgorithmInfo.parameters``, as a routing rule gives them; unknown names are
refused):

``blend`` (number in [0, 1], default 1)
    Weight of the denoised image; 0.5 keeps half of the original noise texture (as with
    the strength levels of iterative reconstruction), 0 returns the input.
``batch_size`` (int, 1-256, default 8)
    Slices per forward pass; larger is faster on a GPU.

Refused (:class:`~ai_pipelines.base.PipelineInputError`): other modalities, results (SEG, SR,
Secondary Capture) and the node's own outputs (no denoising of a denoised series), stacks that
are not a regular grid, and slices smaller than 16 x 16 pixels.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ai_pipelines import writers
from ai_pipelines.base import InputSpec, OutputKind, PipelineInputError, PipelineResult, SeriesInput
from ai_pipelines.denoise.model import build_denoiser, denoise_slices, from_network, to_network
from ai_pipelines.montage.pipeline import refuse_results
from ai_pipelines.nn.pipeline import TorchPipeline
from ai_pipelines.provenance import AlgorithmInfo, ParameterValue, parameters_from_mapping
from ai_pipelines.volume import load_volume

__all__ = ["DenoiseParameters", "DenoisePipeline", "SERIES_DESCRIPTION"]

SERIES_DESCRIPTION = "AI denoised"
MIN_PIXELS = 16
TIMING_KEYS = ("decode", "preprocess", "model", "postprocess", "write")


@dataclass(frozen=True, slots=True)
class DenoiseParameters:
    """The pipeline's parameters, checked when built.

    Parameters
    ----------
    blend : float, optional
        Weight of the denoised image in [0, 1].
    batch_size : int, optional
        Slices per forward pass, 1-256.

    Raises
    ------
    ValueError
        Naming the parameter, when a value is out of range or of the wrong type.
    """

    blend: float = 1.0
    batch_size: int = 8

    def __post_init__(self) -> None:
        if isinstance(self.blend, bool) or not isinstance(self.blend, (int, float, str)):
            raise ValueError(f"blend={self.blend!r} must be a number")
        try:
            blend = float(self.blend)
        except ValueError:
            raise ValueError(f"blend={self.blend!r} must be a number") from None
        if not 0.0 <= blend <= 1.0:
            raise ValueError(f"blend={self.blend!r}; expected 0-1")
        object.__setattr__(self, "blend", blend)
        try:
            batch = float(self.batch_size) if not isinstance(self.batch_size, bool) else float("nan")
        except ValueError:
            batch = float("nan")
        if not batch.is_integer() or not 1 <= batch <= 256:
            raise ValueError(f"batch_size={self.batch_size!r}; expected a whole number 1-256")
        object.__setattr__(self, "batch_size", int(batch))

    @classmethod
    def from_mapping(cls, parameters: Mapping[str, ParameterValue]) -> DenoiseParameters:
        """Build from a rule's parameters; unknown names are refused with ValueError."""
        return parameters_from_mapping(cls, parameters)


class DenoisePipeline(TorchPipeline):
    """Low-dose CT and noisy/undersampled MR denoising, written back as a derived series.

    Parameters
    ----------
    weights : Path
        Checkpoint (``ai_pipelines/weights/denoise.pt`` is the reference) or MONAI bundle.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    verify_weights : bool, optional
        Refuse weights the manifest does not list (default True).

    Attributes
    ----------
    timings : dict[str, float]
        Seconds of the last :meth:`run` per stage: decode, preprocess, model, postprocess, write.
    """

    name: ClassVar[str] = "denoise"
    version: ClassVar[str] = "1.0.0"
    accepts: ClassVar[InputSpec] = InputSpec(modalities=frozenset({"CT", "MR"}), min_slices=1)
    produces: ClassVar[frozenset[OutputKind]] = frozenset({OutputKind.DERIVED})

    timings: dict[str, float]

    @classmethod
    def build_network(cls, overrides: Mapping[str, Any]) -> torch.nn.Module:
        """The residual UNet of :mod:`ai_pipelines.denoise.model` with checkpoint overrides."""
        return build_denoiser(overrides)

    def forward_only(self, scaled: np.ndarray, modality: str = "CT", *, batch_size: int = 8) -> np.ndarray:
        """The bare model forward over ``(z, y, x)`` already scaled slices (for the bench).

        No decoding, scaling or writing: what :meth:`run` spends in its ``"model"`` stage.
        Use :func:`~ai_pipelines.denoise.model.to_network` to scale HU or MR values first.
        """
        loaded = self.loaded()
        return denoise_slices(loaded.network, scaled, modality, device=self.torch_device, batch_size=batch_size)

    def run(self, series: SeriesInput, *, algorithm: AlgorithmInfo) -> PipelineResult:
        """Denoise every slice of a CT or MR series.

        Parameters
        ----------
        series : SeriesInput
            The instances of one CT or MR series.
        algorithm : AlgorithmInfo
            Provenance for the outputs; its ``parameters`` are described in the module.

        Returns
        -------
        PipelineResult
            One CT or MR image per source slice ("AI denoised"), no findings.

        Raises
        ------
        PipelineInputError
            If a parameter is invalid, the modality is not CT or MR, the series is a result or
            the node's own output, the slices do not stack or are too small, or the weights
            cannot be used (:class:`~ai_pipelines.nn.weights.WeightsError`).
        """
        try:
            parameters = DenoiseParameters.from_mapping(algorithm.parameters)
        except (TypeError, ValueError) as exc:
            raise PipelineInputError(f"invalid denoise parameters: {exc}") from exc
        self.accepts.check(series)
        refuse_results(series)
        timings = dict.fromkeys(TIMING_KEYS, 0.0)
        clock = time.perf_counter()
        volume = load_volume(series)
        modality = volume.modality
        if min(volume.shape[1:]) < MIN_PIXELS:
            raise PipelineInputError(f"slices of {volume.shape[1]} x {volume.shape[2]} pixels; needs >= {MIN_PIXELS}")
        timings["decode"], clock = time.perf_counter() - clock, time.perf_counter()

        loaded = self.loaded()  # loading weights counts as preprocessing (once per worker)
        scaled, scale = to_network(volume.array, modality)
        timings["preprocess"], clock = time.perf_counter() - clock, time.perf_counter()

        self.remember_forward_input(scaled, modality, batch_size=parameters.batch_size)
        output = denoise_slices(loaded.network, scaled, modality, device=self.torch_device,
                                batch_size=parameters.batch_size)
        timings["model"], clock = time.perf_counter() - clock, time.perf_counter()

        denoised = from_network(output, modality, scale)
        if parameters.blend < 1.0:
            denoised = parameters.blend * denoised + (1.0 - parameters.blend) * volume.array
        timings["postprocess"], clock = time.perf_counter() - clock, time.perf_counter()

        description = (
            f"AI denoised by {algorithm.name} {algorithm.version} (residual UNet, L1 + PatchGAN; weights "
            f"sha256 {loaded.sha256[:12]}; blend {parameters.blend:g}) from series "
            f"{series.series_instance_uid}; not an acquired image"
        )
        datasets = writers.write_derived_series(
            series, volume, denoised, algorithm=algorithm, series_description=SERIES_DESCRIPTION,
            derivation_description=description,
        )
        timings["write"] = time.perf_counter() - clock
        self.timings = {key: round(value, 4) for key, value in timings.items()}
        return PipelineResult(datasets=tuple(datasets))
