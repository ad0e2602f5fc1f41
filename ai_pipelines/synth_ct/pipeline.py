"""SynthCT: an MR series in, a synthetic CT series in HU out, on the MR's grid and Frame of Reference.

A pix2pix-style generator (MONAI UNet, trained against a PatchGAN critic) maps each axial MR
slice to CT. The reference weights were trained on MR-like images *derived from real CT*
(:mod:`ai_pipelines.synthetic.mr_from_ct`), not on real MR: they show that the path works and
give a floor to compare against; a user's checkpoint trained on real paired data (same
network, or any ``build_network``-compatible kwargs) is loaded the same way.

What happens to the series (timed under ``self.timings``):

- ``decode``: :func:`~ai_pipelines.volume.load_volume` (regular stack, sorted by position);
- ``preprocess``: body mask and robust normalisation (99th percentile inside the body = 1,
  see :mod:`ai_pipelines.synth_ct.preprocess`), in-plane resampling to 1.5 mm;
- ``model``: the generator on batches of slices (:meth:`SynthCT.forward_only`);
- ``postprocess``: back to the MR's rows and columns, to HU, air (-1024) outside the body;
- ``write``: :func:`~ai_pipelines.writers.write_derived_series` as CT Image Storage
  ("AI synthetic CT", DERIVED\\SECONDARY, "AI" burned in, soft-tissue window 40/400).

Parameters (``AlgorithmInfo.parameters``; unknown names are refused):

``burn_in_mark`` (bool, default true)
    Burn "AI" into the top-left corner; turn off only where the pixels feed planning software
    that must not see it (the series is still labelled AI-generated everywhere else).
``window_center``, ``window_width`` (numbers, default 40 and 400: soft tissue)
    The window written into the series.

Refusals (:class:`~ai_pipelines.base.PipelineInputError`): not MR; fewer than 1 slice; a stack
``load_volume`` refuses; slices that are not roughly axial (the network saw axial slices only);
pixels coarser than 4 mm or slices smaller than 32 x 32; an image without a body (blank or
noise); weights the manifest does not vouch for (:class:`~ai_pipelines.nn.weights.WeightsError`).
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
from ai_pipelines.nn.pipeline import TorchPipeline
from ai_pipelines.provenance import AlgorithmInfo, ParameterValue, parameters_from_mapping
from ai_pipelines.synth_ct.inference import prepare_slices, restore_slices, translate
from ai_pipelines.synth_ct.model import build_generator
from ai_pipelines.synth_ct.preprocess import normalise_mr
from ai_pipelines.volume import Volume, load_volume

__all__ = ["SERIES_INDEX", "SynthCT", "SynthCtParameters"]

#: Index passed to output_series_number (the denoise pipeline writes index 0).
SERIES_INDEX = 1
MAX_PIXEL_SPACING_MM = 4.0
MIN_MATRIX = 32
_AXIAL_COSINE = 0.85  # |slice normal . patient z| above this counts as axial (within ~32 degrees)


@dataclass(frozen=True, slots=True)
class SynthCtParameters:
    """The pipeline's parameters, checked when built (see the module docstring).

    Raises
    ------
    ValueError
        Naming the parameter and value when one is invalid.
    """

    burn_in_mark: bool = True
    window_center: float = 40.0
    window_width: float = 400.0

    def __post_init__(self) -> None:
        mark = self.burn_in_mark
        if isinstance(mark, str) and mark.lower() in ("true", "false"):
            mark = mark.lower() == "true"
        if not isinstance(mark, bool):
            raise ValueError(f"burn_in_mark={self.burn_in_mark!r} must be true or false")
        object.__setattr__(self, "burn_in_mark", mark)
        for name in ("window_center", "window_width"):
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name}={value!r} must be a number") from None
            if isinstance(value, bool) or not np.isfinite(number):
                raise ValueError(f"{name}={value!r} must be a finite number")
            object.__setattr__(self, name, number)
        if self.window_width < 1:
            raise ValueError(f"window_width={self.window_width!r}; expected >= 1")

    @classmethod
    def from_mapping(cls, parameters: Mapping[str, ParameterValue]) -> SynthCtParameters:
        """Build from a rule's parameters; unknown names are refused with ValueError."""
        return parameters_from_mapping(cls, parameters)


def _check_geometry(volume: Volume) -> None:
    normal = np.asarray(volume.direction[0])
    if abs(normal[2]) < _AXIAL_COSINE:
        raise PipelineInputError(
            f"slices are not axial (slice normal {np.round(normal, 2).tolist()}); the synth_ct network "
            "was trained on axial slices only: send an axial series")
    if max(volume.pixel_spacing) > MAX_PIXEL_SPACING_MM:
        raise PipelineInputError(
            f"pixel spacing {volume.pixel_spacing} mm is coarser than {MAX_PIXEL_SPACING_MM} mm; "
            "too coarse for a synthetic CT")
    if min(volume.shape[1:]) < MIN_MATRIX:
        raise PipelineInputError(f"slices of {volume.shape[1]} x {volume.shape[2]} pixels; need >= {MIN_MATRIX}")


class SynthCT(TorchPipeline):
    """MR -> synthetic CT (HU) as a derived CT series (see the module docstring).

    Parameters
    ----------
    weights : Path
        Checkpoint (``synth_ct.pt``) or MONAI bundle whose network maps ``(N, 1, H, W)``
        normalised MR at 1.5 mm pixels to CT scaled to [-1, 1] over [-1024, 3000] HU.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    verify_weights : bool, optional
        Refuse weights the manifest does not list (default True).
    """

    name: ClassVar[str] = "synth_ct"
    version: ClassVar[str] = "1.0.0"
    accepts: ClassVar[InputSpec] = InputSpec(modalities=frozenset({"MR"}), min_slices=1)
    produces: ClassVar[frozenset[OutputKind]] = frozenset({OutputKind.DERIVED})

    timings: dict[str, float]

    @classmethod
    def build_network(cls, overrides: Mapping[str, Any]) -> torch.nn.Module:
        """The generator (:func:`~ai_pipelines.synth_ct.model.build_generator`)."""
        return build_generator(overrides)

    def forward_only(self, slices: np.ndarray) -> np.ndarray:
        """The bare model forward, for the bench: no normalisation, resampling or writing.

        Parameters
        ----------
        slices : numpy.ndarray
            ``(z, H, W)`` normalised MR at 1.5 mm pixels, H and W multiples of 8 (e.g. the
            first output of :func:`~ai_pipelines.synth_ct.inference.prepare_slices`, squeezed).

        Returns
        -------
        numpy.ndarray
            ``(z, H, W)`` CT scaled to [-1, 1].
        """
        tensor = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[:, None]
        return translate(self.loaded().network, tensor, self.torch_device)[:, 0].numpy()

    def run(self, series: SeriesInput, *, algorithm: AlgorithmInfo) -> PipelineResult:
        """Make the synthetic CT series.

        Parameters
        ----------
        series : SeriesInput
            The instances of one axial MR series.
        algorithm : AlgorithmInfo
            Provenance for the outputs; its ``parameters`` are the pipeline's.

        Returns
        -------
        PipelineResult
            One CT Image Storage instance per MR slice, no findings.

        Raises
        ------
        PipelineInputError
            See the module docstring (WeightsError for unverified weights is one).
        """
        try:
            parameters = SynthCtParameters.from_mapping(algorithm.parameters)
        except (TypeError, ValueError) as exc:
            raise PipelineInputError(f"invalid synth_ct parameters: {exc}") from exc
        self.accepts.check(series)
        network = self.loaded().network
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        volume = load_volume(series)
        timings["decode"] = time.perf_counter() - clock
        _check_geometry(volume)

        clock = time.perf_counter()
        try:
            normalised, mask = normalise_mr(np.asarray(volume.array, dtype=np.float32))
        except ValueError as exc:
            raise PipelineInputError(f"cannot normalise the MR: {exc}") from exc
        slices, geometry = prepare_slices(normalised, volume.pixel_spacing)
        timings["preprocess"] = time.perf_counter() - clock

        clock = time.perf_counter()
        self.remember_forward_input(slices[:, 0].numpy())
        output = translate(network, slices, self.torch_device)
        timings["model"] = time.perf_counter() - clock

        clock = time.perf_counter()
        hu = restore_slices(output, geometry, mask)
        timings["postprocess"] = time.perf_counter() - clock

        clock = time.perf_counter()
        datasets = writers.write_derived_series(
            series, volume, hu, algorithm=algorithm, modality="CT", series_description="AI synthetic CT",
            derivation_description=(
                f"Synthetic CT generated from MR series {series.series_instance_uid} by AI algorithm "
                f"{algorithm.name} {algorithm.version} (pix2pix UNet); the model was trained on MR-like "
                "images derived from CT, not on real MR. Not an acquired CT: HU are estimates"),
            window=(parameters.window_center, parameters.window_width),
            burn_in_mark=parameters.burn_in_mark, series_index=SERIES_INDEX,
        )
        timings["write"] = time.perf_counter() - clock
        self.timings = timings
        return PipelineResult(datasets=tuple(datasets))
