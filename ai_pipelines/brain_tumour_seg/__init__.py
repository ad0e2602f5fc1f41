"""Brain tumour segmentation: a MONAI UNet on one FLAIR or T1 post-contrast MR series -> SEG, SR, SC.

- :mod:`~ai_pipelines.brain_tumour_seg.pipeline`: the Pipeline (run, refusals, writing).
- :mod:`~ai_pipelines.brain_tumour_seg.model`: the network, the 2 mm working grid, inference.
- :mod:`~ai_pipelines.brain_tumour_seg.contrast`: FLAIR / T1c detection and the parameters.
- :mod:`~ai_pipelines.brain_tumour_seg.train`: ``python -m ai_pipelines.brain_tumour_seg.train``.
- :mod:`~ai_pipelines.brain_tumour_seg.baseline`: thresholding + morphology, Dice and HD95.
- :mod:`~ai_pipelines.brain_tumour_seg.evaluation`: model vs baseline, synthetic and real.
- :mod:`~ai_pipelines.brain_tumour_seg.nifti`: a NIfTI volume as a DICOM MR series.

Importing the package imports nothing heavy; its modules import torch and MONAI.
"""

from __future__ import annotations
