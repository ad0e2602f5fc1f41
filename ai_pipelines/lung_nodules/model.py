"""The nodule network and the arrays around it: canonical grid, heat-map targets, peaks, saliency.

The network is a small MONAI 3D UNet with a 1x1x1 head of two output channels on a 1.5 mm grid:
channel 0 a heat map (logits of Gaussian blobs centred on nodules, CenterNet style), channel
1 a nodule segmentation (logits). Detections are local maxima of the heat map above a
threshold; each takes its extent (diameter, volume, SEG mask) from the segmentation
component that holds its peak, and weaker peaks inside a stronger detection are dropped
(non-maximum suppression).

Input: CT in HU, reoriented to the training orientation (axes S, P, L), resampled to
:data:`SPACING`, clipped to :data:`HU_RANGE` and scaled to [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.networks.nets import UNet
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import pdist

__all__ = [
    "HU_RANGE",
    "NETWORK_KWARGS",
    "HeatSegNet",
    "ROI",
    "SALIENCY_WINDOW",
    "SPACING",
    "Canonical",
    "Detection",
    "build_network",
    "extract_detections",
    "heat_target",
    "normalise",
    "resample",
    "resample_window",
    "saliency_map",
    "saliency_window",
]

SPACING = (1.5, 1.5, 1.5)
HU_RANGE = (-1000.0, 400.0)
#: Sliding-window size at inference (voxels of SPACING): the training patch size. Instance norm
#: sees the same context as in training (64x128x128 windows lowered the nodule peaks), and on
#: 2 CPU cores a 200x240x240 grid took 9.7 s against 19.2 s for 64x128x128.
ROI = (32, 64, 64)
NETWORK_KWARGS: dict[str, Any] = {
    "spatial_dims": 3, "in_channels": 1, "features": 16, "channels": (8, 16, 32, 64),
    "strides": (2, 2, 2), "num_res_units": 1,
}
#: Start of the heat channel's bias: p = 0.01 everywhere (CenterNet's prior), a small focal loss.
HEAT_PRIOR_LOGIT = -4.6


class HeatSegNet(torch.nn.Module):
    """A MONAI UNet with ``features`` output channels and a 1x1x1 head: heat logits, segmentation logits.

    MONAI's UNet ends in its ``out_channels``, after the top layer's instance norm: with two
    outputs every decision would pass through two normalised channels. The wider top and a
    plain convolution as the head let the heat map be sparse (one peak per nodule).
    """

    def __init__(self, *, features: int, **unet: Any) -> None:
        super().__init__()
        self.unet = UNet(out_channels=features, **unet)
        self.head = torch.nn.Conv3d(features, 2, kernel_size=1)
        with torch.no_grad():
            self.head.bias[0] = HEAT_PRIOR_LOGIT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.unet(x))


def build_network(overrides: Mapping[str, Any]) -> torch.nn.Module:
    """The :class:`HeatSegNet` of :data:`NETWORK_KWARGS`, with a checkpoint's keyword overrides."""
    kwargs = {**NETWORK_KWARGS, **dict(overrides)}
    kwargs["channels"], kwargs["strides"] = tuple(kwargs["channels"]), tuple(kwargs["strides"])
    return HeatSegNet(**kwargs)


def normalise(hu: np.ndarray) -> np.ndarray:
    """Clip HU to :data:`HU_RANGE` and scale to [0, 1] (float32)."""
    low, high = HU_RANGE
    return ((np.clip(hu, low, high) - low) / (high - low)).astype(np.float32)


def resample(array: np.ndarray, spacing: Sequence[float], target: Sequence[float], *, order: int = 1,
             shape: Sequence[int] | None = None) -> np.ndarray:
    """Resample a (z, y, x) array from ``spacing`` to ``target`` mm, voxel 0 staying in place.

    ``shape`` fixes the output shape (e.g. to go back to a source grid exactly).
    """
    scale = np.asarray(target, dtype=float) / np.asarray(spacing, dtype=float)
    if shape is None:
        shape = tuple(int(np.floor((n - 1) / s + 1e-6)) + 1 for n, s in zip(array.shape, scale, strict=True))
    if np.allclose(scale, 1.0) and tuple(shape) == array.shape:
        return array
    return ndimage.affine_transform(array, scale, output_shape=tuple(shape), order=order, mode="nearest")


def resample_window(array: np.ndarray, spacing: Sequence[float], target: Sequence[float], *,
                    shape: Sequence[int], box: Sequence[slice]) -> np.ndarray:
    """:func:`resample` of an ``array`` that is zero outside ``box``, to ``shape``, block by block.

    Only the output voxels that read from inside the box are computed (with one voxel of
    margin for linear interpolation), so a saliency window goes back to a 512x512x300 source
    grid in milliseconds instead of seconds; the result equals ``resample(array, ..., shape)``.
    """
    scale = np.asarray(target, dtype=float) / np.asarray(spacing, dtype=float)
    out = np.zeros(tuple(shape), dtype=np.float32)
    crop_low = [max(b.start - 1, 0) for b in box]
    crop_high = [min(b.stop + 1, n) for b, n in zip(box, array.shape, strict=True)]
    first = [int(np.ceil((lo - 1) / s)) for lo, s in zip(crop_low, scale, strict=True)]
    last = [int(np.floor(hi / s)) for hi, s in zip(crop_high, scale, strict=True)]
    first = [min(max(f, 0), n) for f, n in zip(first, shape, strict=True)]
    last = [min(max(f + 1, lo), n) for f, lo, n in zip(last, first, shape, strict=True)]
    if any(hi <= lo for lo, hi in zip(first, last, strict=True)):
        return out
    crop = np.asarray(array[tuple(slice(lo, hi) for lo, hi in zip(crop_low, crop_high, strict=True))],
                      dtype=np.float32)
    offset = [f * s - lo for f, s, lo in zip(first, scale, crop_low, strict=True)]
    block = tuple(hi - lo for lo, hi in zip(first, last, strict=True))
    out[tuple(slice(lo, hi) for lo, hi in zip(first, last, strict=True))] = ndimage.affine_transform(
        crop, scale, offset=offset, output_shape=block, order=1, mode="nearest")
    return out


@dataclass(frozen=True, slots=True)
class Canonical:
    """How a volume's array axes map onto the training orientation (S, P, L) by flips and a permutation.

    Parameters
    ----------
    permutation : tuple[int, int, int]
        ``canonical = array.transpose(permutation)`` (after ``flips``).
    flips : tuple[bool, bool, bool]
        Array axes reversed first.
    """

    permutation: tuple[int, int, int]
    flips: tuple[bool, bool, bool]

    @classmethod
    def of(cls, direction: Sequence[Sequence[float]]) -> Canonical:
        """From a volume's ``direction`` (unit vectors of its z, y, x axes in LPS)."""
        matrix = np.abs(np.asarray(direction, dtype=float))
        # the patient axis (0 L, 1 P, 2 S) each array axis runs along most, one each even when oblique
        _, axis_of = linear_sum_assignment(-matrix)
        axis_of = [int(v) for v in axis_of]
        permutation = tuple(axis_of.index(p) for p in (2, 1, 0))
        flips = tuple(bool(np.asarray(direction)[a][axis_of[a]] < 0) for a in range(3))
        return cls(permutation, flips)  # type: ignore[arg-type]

    def forward(self, array: np.ndarray) -> np.ndarray:
        """Array in source axes -> canonical axes."""
        flipped = array[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]
        return np.ascontiguousarray(flipped.transpose(self.permutation))

    def backward(self, array: np.ndarray) -> np.ndarray:
        """Canonical axes -> source axes (inverse of :meth:`forward`)."""
        restored = array.transpose(np.argsort(self.permutation))
        return np.ascontiguousarray(restored[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)])

    def spacing(self, spacing: Sequence[float]) -> tuple[float, float, float]:
        """Spacing in canonical axis order."""
        return tuple(float(spacing[p]) for p in self.permutation)  # type: ignore[return-value]

    def index_backward(self, index: Sequence[float], shape: Sequence[int]) -> np.ndarray:
        """A canonical (fractional) index -> the source array's index (``shape``: source shape)."""
        source = np.empty(3)
        for c, a in enumerate(self.permutation):
            source[a] = index[c]
        for a in range(3):
            if self.flips[a]:
                source[a] = shape[a] - 1 - source[a]
        return source


def heat_target(shape: Sequence[int], centres: np.ndarray, sigmas: Sequence[float]) -> np.ndarray:
    """Gaussian blobs (peak 1 at the voxel nearest each centre) on a grid, as the network learns them.

    Parameters
    ----------
    shape : Sequence[int]
        Grid shape.
    centres : numpy.ndarray
        ``(N, 3)`` fractional voxel indices (may lie outside the grid).
    sigmas : Sequence[float]
        Gaussian sigma of each blob in voxels.
    """
    target = np.zeros(tuple(shape), dtype=np.float32)
    for centre, sigma in zip(centres, sigmas, strict=True):
        reach = int(np.ceil(3 * sigma))
        near = np.round(centre).astype(int)
        low = np.maximum(near - reach, 0)
        high = np.minimum(near + reach + 1, shape)
        if np.any(high <= low):
            continue
        axes = np.meshgrid(*(np.arange(lo, hi) for lo, hi in zip(low, high, strict=True)), indexing="ij")
        d2 = sum((axis - c) ** 2 for axis, c in zip(axes, centre, strict=True))
        blob = np.exp(-d2 / (2 * sigma**2)).astype(np.float32)
        if all(0 <= n < s for n, s in zip(near, shape, strict=True)):
            blob[tuple(near - low)] = 1.0
        box = tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))
        target[box] = np.maximum(target[box], blob)
    return target


def blob_sigma(diameter_mm: float) -> float:
    """Heat-map sigma (voxels of :data:`SPACING`) for a nodule of ``diameter_mm``."""
    return max(1.5, diameter_mm / 5.0) / SPACING[0]


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected nodule on the network grid.

    Parameters
    ----------
    index : tuple[float, float, float]
        Peak voxel (k, j, i) on the canonical 1.5 mm grid.
    probability : float
        Heat-map value at the peak (sigmoid), in [0, 1].
    diameter_mm : float
        Longest in-plane (axial) extent of its segmentation component.
    volume_mm3 : float
        Volume of that component.
    component : int
        Label of the component in the label array :func:`extract_detections` returns.
    """

    index: tuple[float, float, float]
    probability: float
    diameter_mm: float
    volume_mm3: float
    component: int


def _long_axis_mm(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Longest distance between two voxel centres of one axial slice of ``mask``, plus a voxel."""
    longest = 0.0
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        points = np.argwhere(mask[k]) * np.asarray(spacing[1:])
        if len(points) > 1:
            if len(points) > 400:  # the extremes lie on the outline
                edge = mask[k] & ~ndimage.binary_erosion(mask[k])
                points = np.argwhere(edge) * np.asarray(spacing[1:])
            longest = max(longest, float(pdist(points).max()))
    return longest + float(np.mean(spacing[1:]))


def extract_detections(heat: np.ndarray, seg: np.ndarray, *, threshold: float, max_count: int = 50,
                       spacing: Sequence[float] = SPACING) -> tuple[list[Detection], np.ndarray]:
    """Peaks of the heat map with their segmentation components (non-maximum suppressed).

    Parameters
    ----------
    heat, seg : numpy.ndarray
        ``(z, y, x)`` probabilities (sigmoid of the network's two channels).
    threshold : float
        Lowest peak probability kept.
    max_count : int, optional
        Most detections returned (highest first).
    spacing : Sequence[float], optional
        Grid spacing (mm).

    Returns
    -------
    tuple[list[Detection], numpy.ndarray]
        Detections by falling probability, and an int32 label array: label ``n + 1`` is the
        extent of detection ``n`` (its segmentation component, else the part of the heat map
        above half its peak).
    """
    peaks = (heat == ndimage.maximum_filter(heat, size=3)) & (heat >= threshold)
    order = np.argsort(-heat[peaks], kind="stable")
    candidates = np.argwhere(peaks)[order]
    components, _ = ndimage.label(seg >= 0.5)
    labels = np.zeros(heat.shape, dtype=np.int32)
    detections: list[Detection] = []
    voxel = float(np.prod(spacing))
    for peak in candidates:
        if len(detections) >= max_count:
            break
        p = tuple(int(v) for v in peak)
        if labels[p]:
            continue  # inside a stronger detection
        near = [(c.index, c.diameter_mm) for c in detections]
        if any(np.linalg.norm((np.array(i) - peak) * spacing) < max(d / 2, 3.0) for i, d in near):
            continue
        number = components[p]
        if number == 0:  # look one voxel around for the component
            box = tuple(slice(max(v - 1, 0), v + 2) for v in p)
            values = components[box][components[box] > 0]
            number = int(values[0]) if values.size else 0
        if number:
            extent = (components == number) & (labels == 0)
        else:
            blob, _ = ndimage.label(heat >= 0.5 * heat[p])
            extent = (blob == blob[p]) & (labels == 0)
        if not extent.any():
            continue
        labels[extent] = len(detections) + 1
        detections.append(Detection(
            index=tuple(float(v) for v in peak), probability=float(heat[p]),  # type: ignore[arg-type]
            diameter_mm=_long_axis_mm(extent, spacing), volume_mm3=float(extent.sum()) * voxel,
            component=len(detections) + 1,
        ))
    return detections, labels


#: Crop around a detection in which :func:`saliency_map` takes its gradient (voxels of SPACING).
SALIENCY_WINDOW = (32, 64, 64)


def saliency_window(peak: Sequence[int], shape: Sequence[int],
                    window: Sequence[int] = SALIENCY_WINDOW) -> tuple[slice, ...]:
    """The crop of :func:`saliency_map` around ``peak``: outside it the map is zero."""
    low = [int(np.clip(p - w // 2, 0, max(n - w, 0))) for p, w, n in zip(peak, window, shape, strict=True)]
    return tuple(slice(lo, min(lo + w, n)) for lo, w, n in zip(low, window, shape, strict=True))


def saliency_map(network: torch.nn.Module, image: np.ndarray, peak: Sequence[int], *,
                 device: torch.device, window: Sequence[int] = SALIENCY_WINDOW) -> np.ndarray:
    """Input-gradient saliency of one detection: |d heat-logit(peak) / d input|, smoothed, in [0, 1].

    Computed on a window around the peak (the receptive field that matters), so it costs one
    forward and one backward pass of a small crop.

    Parameters
    ----------
    network : torch.nn.Module
        The heat-map network (eval mode).
    image : numpy.ndarray
        ``(z, y, x)`` normalised input on the network grid.
    peak : Sequence[int]
        The detection's peak voxel.
    device : torch.device
        Where to compute.
    window : Sequence[int], optional
        Crop size (multiples of 8).

    Returns
    -------
    numpy.ndarray
        Same shape as ``image``; 0 outside the window, the map scaled so its maximum is 1.
    """
    box = saliency_window(peak, image.shape, window)
    low = [b.start for b in box]
    crop = image[box]
    pad = [(0, w - s) for w, s in zip(window, crop.shape, strict=True)]
    tensor = torch.from_numpy(np.pad(crop, pad, mode="edge"))[None, None].to(device).requires_grad_(True)
    with torch.enable_grad():
        output = network(tensor)
        local = tuple(int(p - lo) for p, lo in zip(peak, low, strict=True))
        (grad,) = torch.autograd.grad(output[(0, 0, *local)], tensor)
    gradient = grad[0, 0].abs().float().cpu().numpy()[tuple(slice(0, s) for s in crop.shape)]
    gradient = ndimage.gaussian_filter(gradient, 1.0)
    result = np.zeros(image.shape, dtype=np.float32)
    result[box] = gradient / max(float(gradient.max()), 1e-12)
    return result
