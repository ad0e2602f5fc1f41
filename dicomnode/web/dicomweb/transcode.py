"""Stored instances re-encoded for a client: Part 10 in Explicit VR Little Endian, and frames.

Stored bytes are never changed; these functions read a stored file and return new bytes.
Frames go out as stored (the compressed bit stream of each frame, from the encapsulated
fragments) or native (decoded by pydicom, little endian, frame by frame).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels import iter_pixels, pack_bits
from pydicom.uid import UID

from dicomnode.web.dicomweb.media import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    NATIVE_LITTLE_ENDIAN,
)

#: Bytes per read when streaming a stored file.
CHUNK_SIZE = 4 * 1024 * 1024
#: Values longer than this stay on disk until used (pixel data, mostly).
DEFER_SIZE = 16 * 1024
_PIXEL_DATA = 0x7FE00010


class NoPixelData(LookupError):
    """The instance has no Pixel Data, so it has no frames."""


class FrameOutOfRange(LookupError):
    """A requested frame number is not in the instance."""


def read_chunks(path: Path) -> Iterator[bytes]:
    """The bytes of a stored file, a chunk at a time."""
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            yield chunk


def read_header(path: Path) -> Dataset:
    """A stored instance with its large values left on disk until used."""
    return dcmread(path, defer_size=DEFER_SIZE)


def to_explicit_little(path: Path) -> bytes:
    """A stored instance as a Part 10 file in Explicit VR Little Endian, decompressed if needed.

    Raises
    ------
    Exception
        Whatever pydicom raises when the stored pixel data cannot be decoded.
    """
    ds = dcmread(path)
    transfer_syntax = ds.file_meta.TransferSyntaxUID
    if transfer_syntax.is_compressed and "PixelData" in ds:
        ds.decompress()  # to Explicit VR Little Endian; colour JPEG comes out as RGB
    else:
        ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
    buffer = BytesIO()
    ds.save_as(buffer, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buffer.getvalue()


def frame_count(ds: Dataset) -> int:
    """Number of frames in an instance with pixel data (1 when NumberOfFrames is absent)."""
    try:
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return 1


def check_frames(ds: Dataset, numbers: Sequence[int]) -> int:
    """Check that ``numbers`` (1-based) are frames of ``ds``; returns the frame count.

    Raises
    ------
    NoPixelData, FrameOutOfRange
    """
    if "PixelData" not in ds:
        raise NoPixelData("the instance has no Pixel Data")
    count = frame_count(ds)
    bad = [n for n in numbers if not 1 <= n <= count]
    if bad:
        raise FrameOutOfRange(f"frame {bad[0]} is not in the instance, which has {count} frame(s)")
    return count


def _native_frame_size(ds: Dataset) -> int:
    pixels = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
    return pixels * int(ds.BitsAllocated) // 8


def stored_frames(ds: Dataset, numbers: Sequence[int]) -> Iterator[bytes]:
    """Frames as stored: compressed bit streams, or native little-endian slices.

    ``ds`` must have been read from a file in a little-endian or compressed syntax.
    """
    count = check_frames(ds, numbers)
    transfer_syntax = ds.file_meta.TransferSyntaxUID
    if transfer_syntax.is_compressed:
        pixel_data = ds.PixelData
        for number in numbers:
            yield get_frame(pixel_data, number - 1, number_of_frames=count)
        return
    if int(ds.BitsAllocated) == 1:
        yield from native_frames(ds, numbers)
        return
    size = _native_frame_size(ds)
    raw = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    deferred = isinstance(raw, RawDataElement) and raw.value is None
    if deferred and ds.filename and transfer_syntax != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        # Read only the requested frames from the file: no need to load all of Pixel Data.
        with open(ds.filename, "rb") as file:
            for number in numbers:
                file.seek(raw.value_tell + (number - 1) * size)
                yield file.read(size)
        return
    pixel_data = ds.PixelData
    for number in numbers:
        yield bytes(pixel_data[(number - 1) * size : number * size])


def native_frames(ds: Dataset, numbers: Sequence[int]) -> Iterator[bytes]:
    """Frames decoded by pydicom, as little-endian native bytes (colour as interleaved RGB)."""
    check_frames(ds, numbers)
    stored = str(ds.file_meta.TransferSyntaxUID)
    if stored in NATIVE_LITTLE_ENDIAN and int(ds.BitsAllocated) != 1:
        yield from stored_frames(ds, numbers)
        return
    order = sorted(set(n - 1 for n in numbers))
    decoded = dict(zip(order, iter_pixels(ds, indices=order), strict=True))
    for number in numbers:
        frame = decoded[number - 1]
        if int(ds.BitsAllocated) == 1:
            yield pack_bits(frame)
        else:
            yield frame.astype(frame.dtype.newbyteorder("<"), copy=False).tobytes()


def all_frames(ds: Dataset) -> list[int]:
    """Every frame number of the instance, 1-based."""
    return list(range(1, frame_count(ds) + 1))


def parse_frame_list(value: str) -> list[int]:
    """Frame numbers from a WADO-RS frame list ``1,2,3`` (PS3.18 10.4.1.1.4).

    Raises
    ------
    ValueError
        When an entry is not a positive integer.
    """
    numbers = []
    for item in value.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise ValueError(f"{item!r} is not a frame number (1, 2, ...)")
        numbers.append(int(item))
    if not numbers:
        raise ValueError("no frame numbers")
    return numbers


def frame_array(ds: Dataset, number: int) -> np.ndarray:
    """One frame decoded (1-based), for rendering."""
    check_frames(ds, [number])
    return next(iter_pixels(ds, indices=[number - 1]))
