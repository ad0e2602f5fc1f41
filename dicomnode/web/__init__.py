"""The HTTP service: DICOMweb (QIDO-RS, WADO-RS, STOW-RS) and health, built by ``create_app``.

May import ``dicomnode.store``, ``dicomnode.db`` and the ground floor (config, errors, logs);
never ``dicomnode.net``.
"""

from __future__ import annotations
