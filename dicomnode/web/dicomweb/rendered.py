"""WADO-RS rendered and thumbnail resources (PS3.18 10.4.1.1.3, 8.3.5): JPEG or PNG images.

Grey-scale frames go through pydicom's modality LUT, then the VOI from the query
(``window=center,width,function``), else the header's VOI LUT or window, else the frame's
own range; MONOCHROME1 is inverted. Colour frames are scaled to 8 bits. ``viewport=vw,vh``
fits the image into that many pixels, keeping its aspect ratio; thumbnails default to 128.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from fastapi import APIRouter, Request, Response
from PIL import Image
from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, apply_windowing

from dicomnode.store.search import StoredInstance
from dicomnode.web.deps import ServicesDep, SessionDep
from dicomnode.web.dicomweb import media, transcode
from dicomnode.web.dicomweb.wado import find
from dicomnode.web.problem import bad_request, not_acceptable, not_found

router = APIRouter()

_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG"}
_PARAMETERS = {"window", "viewport", "quality", "accept", "annotation", "iccprofile", "charset"}
THUMBNAIL_SIZE = 128


@dataclass(frozen=True, slots=True)
class Window:
    """A VOI window from the query (PS3.18 8.3.5.1.4)."""

    center: float
    width: float
    function: str = "LINEAR"


@dataclass(frozen=True, slots=True)
class Rendering:
    """How to render: media type, window, viewport and JPEG quality."""

    media_type: str
    window: Window | None = None
    viewport: tuple[int, int] | None = None
    quality: int = 90


def parse_rendering(params: Mapping[str, str], accept: str | None, *, thumbnail: bool) -> Rendering:
    """The rendering a request asks for.

    Raises
    ------
    Problem
        400 for a malformed or unknown parameter, 406 for an Accept without JPEG or PNG.
    """
    unknown = sorted(set(params) - _PARAMETERS)
    if unknown:
        raise bad_request(f"unknown query parameter {unknown[0]!r} for a rendered resource")
    ranges = media.parse_accept(params.get("accept") or accept, default="image/jpeg")
    media_type = media.choose(ranges, list(_FORMATS))
    if media_type is None:
        raise not_acceptable("rendered images are sent as image/jpeg or image/png")
    window = None
    if "window" in params:
        parts = params["window"].split(",")
        try:
            center, width = float(parts[0]), float(parts[1])
        except (IndexError, ValueError):
            raise bad_request("window=center,width[,function]: center and width must be numbers") from None
        function = (parts[2] if len(parts) > 2 else "linear").strip().upper().replace("-", "_")
        if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID") or len(parts) > 3 or width <= 0:
            raise bad_request("window=center,width[,function]: width > 0; function linear, linear-exact or sigmoid")
        window = Window(center, width, function)
    viewport = (THUMBNAIL_SIZE, THUMBNAIL_SIZE) if thumbnail else None
    if "viewport" in params:
        try:
            vw, vh = (int(v) for v in params["viewport"].split(","))
        except ValueError:
            raise bad_request("viewport=vw,vh: two positive integers") from None
        if not (0 < vw <= 8192 and 0 < vh <= 8192):
            raise bad_request("viewport=vw,vh: each between 1 and 8192")
        viewport = (vw, vh)
    quality = 90
    if "quality" in params:
        value = params["quality"]
        if not value.isdigit() or not 1 <= int(value) <= 100:
            raise bad_request("quality: an integer from 1 to 100")
        quality = int(value)
    return Rendering(media_type, window, viewport, quality)


def _output_range(ds: Dataset) -> tuple[float, float]:
    """The range pydicom's windowing maps into (PS3.3 C.11.2.1.2, as apply_windowing computes it)."""
    bits = int(ds.BitsStored)
    low: float
    high: float
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        low, high = 0, 2**bits - 1
    else:
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return float(min(low, high)), float(max(low, high))


def _to_8bit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _grey(frame: np.ndarray, ds: Dataset, window: Window | None) -> np.ndarray:
    values = apply_modality_lut(frame, ds)
    if window is not None:
        header = Dataset()
        for keyword in (
            "PhotometricInterpretation",
            "BitsStored",
            "PixelRepresentation",
            "RescaleSlope",
            "RescaleIntercept",
            "ModalityLUTSequence",
        ):
            if keyword in ds:
                header.add(ds[keyword])
        for keyword, vr, value in (
            ("WindowCenter", "DS", window.center),
            ("WindowWidth", "DS", window.width),
            ("VOILUTFunction", "CS", window.function),
        ):
            header.add(DataElement(keyword, vr, value, validation_mode=pydicom_config.IGNORE))
        return _to_8bit(apply_windowing(values, header), *_output_range(header))
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return _to_8bit(apply_voi_lut(values, ds, prefer_lut=True), 0.0, float(2**bits - 1))
    if "WindowCenter" in ds and "WindowWidth" in ds:
        return _to_8bit(apply_windowing(values, ds), *_output_range(ds))
    return _to_8bit(values, float(np.min(values)), float(np.max(values)))


def render(ds: Dataset, number: int, rendering: Rendering) -> bytes:
    """Frame ``number`` (1-based) of ``ds`` as JPEG or PNG bytes."""
    frame = transcode.frame_array(ds, number)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(frame, ds)
        image = Image.fromarray(_to_8bit(rgb, 0.0, float(np.iinfo(rgb.dtype).max)), mode="RGB")
    elif int(ds.get("SamplesPerPixel", 1)) == 3:
        image = Image.fromarray(_to_8bit(frame, 0.0, float(2 ** int(ds.BitsStored) - 1)), mode="RGB")
    else:
        grey = _grey(frame, ds, rendering.window)
        if photometric == "MONOCHROME1":
            grey = 255 - grey
        image = Image.fromarray(grey, mode="L")
    if rendering.viewport is not None:
        vw, vh = rendering.viewport
        scale = min(vw / image.width, vh / image.height)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS
        )
    buffer = io.BytesIO()
    if rendering.media_type == "image/jpeg":
        image.save(buffer, format="JPEG", quality=rendering.quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _answer(
    request: Request, services: ServicesDep, instance: StoredInstance, number: int, *, thumbnail: bool
) -> Response:
    rendering = parse_rendering(dict(request.query_params), request.headers.get("accept"), thumbnail=thumbnail)
    ds = dcmread(services.store_root / instance.file_path)
    try:
        body = render(ds, number, rendering)
    except (transcode.NoPixelData, transcode.FrameOutOfRange) as exc:
        if isinstance(exc, transcode.NoPixelData):
            raise not_acceptable(f"instance {instance.sop_instance_uid} has no image to render") from None
        raise not_found(str(exc)) from None
    except Exception as exc:  # pydicom and Pillow raise many kinds on pixel data they cannot handle
        raise not_acceptable(f"instance {instance.sop_instance_uid} cannot be rendered: {exc}") from exc
    return Response(body, media_type=rendering.media_type)


def _middle(instances: list[StoredInstance]) -> StoredInstance:
    """The instance a series or study thumbnail shows: the middle one of the first series."""
    first_series = [i for i in instances if i.series_instance_uid == instances[0].series_instance_uid]
    return first_series[len(first_series) // 2]


@router.get("/studies/{study}/series/{series}/instances/{instance}/rendered", summary="RetrieveRenderedInstance")
def rendered_instance(
    request: Request, study: str, series: str, instance: str, session: SessionDep, services: ServicesDep
) -> Response:
    return _answer(request, services, find(session, study, series, instance)[0], 1, thumbnail=False)


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered", summary="RetrieveRenderedFrames"
)
def rendered_frame(
    request: Request, study: str, series: str, instance: str, frames: str, session: SessionDep, services: ServicesDep
) -> Response:
    try:
        numbers = transcode.parse_frame_list(frames)
    except ValueError as exc:
        raise bad_request(f"frame list {frames[:80]!r}: {exc}") from None
    if len(numbers) != 1:
        raise bad_request("a rendered frame resource names one frame")
    return _answer(request, services, find(session, study, series, instance)[0], numbers[0], thumbnail=False)


@router.get("/studies/{study}/series/{series}/instances/{instance}/thumbnail", summary="RetrieveInstanceThumbnail")
def instance_thumbnail(
    request: Request, study: str, series: str, instance: str, session: SessionDep, services: ServicesDep
) -> Response:
    return _answer(request, services, find(session, study, series, instance)[0], 1, thumbnail=True)


@router.get("/studies/{study}/series/{series}/thumbnail", summary="RetrieveSeriesThumbnail")
def series_thumbnail(request: Request, study: str, series: str, session: SessionDep, services: ServicesDep) -> Response:
    return _answer(request, services, _middle(find(session, study, series)), 1, thumbnail=True)


@router.get("/studies/{study}/thumbnail", summary="RetrieveStudyThumbnail")
def study_thumbnail(request: Request, study: str, session: SessionDep, services: ServicesDep) -> Response:
    return _answer(request, services, _middle(find(session, study)), 1, thumbnail=True)
