"""Sliding-window inference over a volume (MONAI's inferer), AMP on CUDA."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from ai_pipelines.nn.device import autocast

__all__ = ["predict_volume"]


def predict_volume(
    network: torch.nn.Module,
    image: np.ndarray,
    *,
    roi_size: Sequence[int],
    device: torch.device,
    overlap: float = 0.25,
    batch_size: int = 1,
    mode: str = "gaussian",
    padding_mode: str = "constant",
) -> np.ndarray:
    """Run ``network`` over ``image`` in overlapping windows and stitch the outputs.

    Parameters
    ----------
    network : torch.nn.Module
        In eval mode, on ``device``.
    image : numpy.ndarray
        ``(channels, *spatial)`` float32 input, already normalised.
    roi_size : Sequence[int]
        Window size (spatial dimensions); a smaller image is padded.
    device : torch.device
        Where the windows are computed; the stitched output stays on the CPU so that a
        large volume does not need to fit in GPU memory.
    overlap : float, optional
        Fraction of a window shared with its neighbour.
    batch_size : int, optional
        Windows per forward pass.
    mode : str, optional
        ``"gaussian"`` (weights window centres more) or ``"constant"``.
    padding_mode : str, optional
        How an image smaller than a window is padded: ``"constant"`` (zeros: the background
        of a normalised skull-stripped MR) or ``"replicate"`` (edge values: a CT slab thinner
        than the window then continues as it is instead of ending in air).

    Returns
    -------
    numpy.ndarray
        ``(out_channels, *spatial)`` float32 network output (logits as the network gives them).
    """
    batch = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    with autocast(device):
        output = sliding_window_inference(
            batch, roi_size=tuple(roi_size), sw_batch_size=batch_size, predictor=network,
            overlap=overlap, mode=mode, padding_mode=padding_mode, sw_device=device, device=torch.device("cpu"),
        )
    return output[0].float().numpy()
