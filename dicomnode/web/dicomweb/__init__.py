"""DICOMweb (PS3.18): QIDO-RS search, WADO-RS retrieve and rendering, STOW-RS store.

Mounted by ``web.app`` under ``web.dicomweb_prefix`` (``/dicom-web``). Reads the index through
``dicomnode.store.search`` and stores through ``dicomnode.store.ingest``.
"""

from __future__ import annotations

from fastapi import APIRouter

from dicomnode.web.dicomweb import qido, rendered, stow, wado


def build_router() -> APIRouter:
    """All DICOMweb routes, relative to the DICOMweb root."""
    router = APIRouter(tags=["DICOMweb"])
    for module in (qido, wado, rendered, stow):
        router.include_router(module.router)
    return router
