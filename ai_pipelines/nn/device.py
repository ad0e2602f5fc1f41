"""A torch device and mixed precision for the device strings the Pipeline contract uses."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["autocast", "torch_device"]


def torch_device(name: str) -> torch.device:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` into a torch device that exists.

    Parameters
    ----------
    name : str
        Device string from the pipeline's constructor.

    Returns
    -------
    torch.device
        The device.

    Raises
    ------
    RuntimeError
        If CUDA or MPS is asked for and torch does not see it (a run on the wrong worker; the
        node retries it elsewhere rather than silently falling back to a slow CPU).
    """
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but torch sees no CUDA GPU")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {name!r} asked for, but torch sees no MPS device")
    return device


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """Inference mode, plus float16 autocast on CUDA (AMP); plain float32 on CPU.

    CPU autocast to bfloat16 is left off: on the CPUs we run on it is slower than float32
    for 3D convolutions and changes results.
    """
    with torch.inference_mode():
        if device.type == "cuda":
            with torch.autocast(device_type="cuda", dtype=torch.float16):
                yield
        else:
            yield
