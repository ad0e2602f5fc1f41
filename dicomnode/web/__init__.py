"""The HTTP service: DICOMweb (QIDO-RS, WADO-RS, STOW-RS), the admin API and health, built by ``create_app``.

May import ``dicomnode.jobs`` (deferring by name), ``routing``, ``provenance``, ``dispatch``,
``store``, ``db`` and the ground floor (config, errors, logs); never ``dicomnode.net``.
"""

from __future__ import annotations
