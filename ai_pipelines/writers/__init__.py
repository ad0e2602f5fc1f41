"""highdicom writers: SEG, SR TID 1500, Secondary Capture and derived image series.

The only place in ``ai_pipelines`` that calls highdicom constructors. Each
writer takes the source :class:`~ai_pipelines.base.SeriesInput`, its
:class:`~ai_pipelines.volume.Volume` (or, for :func:`write_image_sc`, an image
already rendered and the source slices it shows) and an
:class:`~ai_pipelines.provenance.AlgorithmInfo`, and returns datasets that
share the source's Study (and, where the IOD has one, Frame of Reference),
reference the source instances, name the algorithm (name, version, family,
weights sha256) and carry ContributingEquipment. SeriesNumber is derived from
the source's (:func:`output_series_number`), never random. Writers return
datasets; they never write files. One module per object kind keeps each under
the house size limit.
"""

from __future__ import annotations

from ai_pipelines.writers.derived import write_derived_series
from ai_pipelines.writers.identity import MANUFACTURER, output_series_number
from ai_pipelines.writers.sc import write_image_sc, write_sc
from ai_pipelines.writers.seg import Segment, write_seg
from ai_pipelines.writers.sr import write_tid1500_sr

__all__ = [
    "MANUFACTURER",
    "Segment",
    "output_series_number",
    "write_derived_series",
    "write_image_sc",
    "write_sc",
    "write_seg",
    "write_tid1500_sr",
]
