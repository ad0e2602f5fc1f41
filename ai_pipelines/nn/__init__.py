"""Torch plumbing shared by the pipelines that run a network.

- :mod:`~ai_pipelines.nn.device`: the torch device and mixed precision for a device string.
- :mod:`~ai_pipelines.nn.weights`: checkpoints, MONAI bundles and the sha256 manifest.
- :mod:`~ai_pipelines.nn.pipeline`: :class:`TorchPipeline`, a Pipeline that loads its network once.
- :mod:`~ai_pipelines.nn.inference`: sliding-window inference (MONAI) with AMP on CUDA.
- :mod:`~ai_pipelines.nn.training`: seeding, thread limits and a progress bar for ``train.py``.

Importing this package imports torch; the registry and the node import it only when a
pipeline that needs it runs.
"""

from __future__ import annotations
