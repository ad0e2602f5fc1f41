"""ai_pipelines: pure functions from a DICOM series to DICOM result objects.

This package never imports ``dicomnode`` nor the service stack (database, queue, network):
a pipeline can be trained, tested and evaluated on its own.
"""

from __future__ import annotations
