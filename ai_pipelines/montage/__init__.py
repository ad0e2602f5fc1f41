"""Key-image montage: evenly spaced slices of a series tiled into one labelled Secondary Capture.

No model and no weights; it proves the routing -> job -> result loop and gives a
one-glance overview of any image series. pipeline.py holds the Pipeline and its
parameters, slices.py the display order (no grid checks), tiles.py the rendering.
Like all of ai_pipelines it imports neither dicomnode nor the service stack.
"""

from __future__ import annotations

from ai_pipelines.montage.pipeline import KeyImageMontage, MontageParameters

__all__ = ["KeyImageMontage", "MontageParameters"]
