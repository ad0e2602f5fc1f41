"""Datasets to and from the DICOM JSON model (PS3.18 Annex F), through pydicom.

pydicom writes the JSON (``Dataset.to_json_dict``, or ``DataElement.to_json_dict`` element by
element for stored headers, remembering the JSON of values that repeat across a series); this
module only decides which values go out as a BulkDataURI and what that URI is. A bulk value's
URI names its place in the dataset: ``{instance}/bulkdata/7FE00010`` at the top level,
``{instance}/bulkdata/00540016/0/00181072`` inside sequence item 0. Large values are never
read from disk to write metadata: the file is parsed with ``defer_size`` and deferred values
are stood in for by a placeholder.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

#: Binary values longer than this many bytes are sent as BulkDataURI (PS3.18 F.2.7).
BULK_DATA_THRESHOLD = 1024
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_PIXEL_DATA = 0x7FE00010
#: Pixel Data, Float Pixel Data, Double Float Pixel Data: always bulk data, however small.
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, _PIXEL_DATA})


def _vr_of(raw: RawDataElement, ds: Dataset) -> str:
    vr = raw.VR or dictionary_VR(raw.tag)
    if vr in ("OB or OW", "US or SS or OW"):
        return "OW" if int(ds.get("BitsAllocated", 16) or 16) > 8 else "OB"
    return str(vr)


def _raw_vr(ds: Dataset, tag: BaseTag) -> str:
    raw = ds.get_item(tag, keep_deferred=True)
    if raw is not None and raw.VR:
        return str(raw.VR)
    try:
        return str(dictionary_VR(tag))
    except KeyError:  # a private element of an implicit VR file
        return "UN"


def _paths(ds: Dataset, prefix: str, found: dict[int, str]) -> None:
    """Record id(element) -> bulk data path for the binary elements inside sequences.

    Top-level ones need no entry (their path is their tag), so only sequences are converted
    here: converting every element twice was a third of the cost of a metadata request.
    """
    for tag in list(ds.keys()):
        vr = _raw_vr(ds, tag)
        path = f"{prefix}{int(tag):08X}"
        if vr == "SQ":
            for number, item in enumerate(ds[tag].value):
                _paths(item, f"{path}/{number}/", found)
        elif prefix and vr in _BINARY_VRS:
            found[id(ds[tag])] = path  # converts in place, so to_json_dict sees this object


def _stand_in_bulk(ds: Dataset) -> None:
    """Replace pixel data and the values pydicom left on disk (``defer_size``) by a placeholder."""
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        if isinstance(raw, RawDataElement) and raw.length and (raw.value is None or int(tag) in _PIXEL_TAGS):
            vr = _vr_of(raw, ds)
            if vr not in _BINARY_VRS and int(tag) not in _PIXEL_TAGS:
                continue  # a large sequence (SEG frames, SR content) or text: read it as usual
            placeholder = b"\0" * (BULK_DATA_THRESHOLD + 1)
            ds[tag] = DataElement(tag, vr, placeholder, validation_mode=pydicom_config.IGNORE)


def to_json(ds: Dataset, *, bulk_data_uri: Callable[[str], str] | None) -> dict[str, Any]:
    """The DICOM JSON object of ``ds``; binary values above the threshold as BulkDataURI.

    Parameters
    ----------
    ds
        The dataset (file meta is not part of it and is not written).
    bulk_data_uri
        Maps a bulk data path (``7FE00010``, ``00540016/0/00181072``) to its URI; None writes
        every binary value inline.
    """
    if bulk_data_uri is None:
        return ds.to_json_dict()
    _stand_in_bulk(ds)
    paths: dict[int, str] = {}
    _paths(ds, "", paths)

    def handler(elem: DataElement) -> str:
        return bulk_data_uri(paths.get(id(elem), f"{int(elem.tag):08X}"))

    threshold = BULK_DATA_THRESHOLD * 4 // 3
    charset = ds.get_item(0x00080005, keep_deferred=True)
    charset_key = charset.value if isinstance(charset, RawDataElement) else str(getattr(charset, "value", ""))
    out: dict[str, Any] = {}
    for tag in ds.keys():
        raw = ds.get_item(tag, keep_deferred=True)
        key = _repeatable(raw, charset_key)
        if key is None:
            out[f"{tag:08X}"] = ds[tag].to_json_dict(handler, threshold)
            continue
        value = _ELEMENT_JSON.get(key)
        if value is None:
            value = ds[tag].to_json_dict(handler, threshold)
            if len(_ELEMENT_JSON) >= _ELEMENT_JSON_SIZE:
                _ELEMENT_JSON.clear()  # a crude bound: refills within one series
            _ELEMENT_JSON[key] = value
        out[f"{tag:08X}"] = value
    return out


#: pydicom's JSON of short top-level values, by (tag, VR, bytes, byte order, character set): the
#: patient, study and series attributes repeat in every header of a series, and converting each
#: element (pydicom's ``to_json_dict``) was most of the cost of a cold ``/metadata`` request.
#: The dicts are shared between answers and must not be changed (they are only serialised).
_ELEMENT_JSON: dict[tuple[int, str, bytes, bool, object], dict[str, Any]] = {}
_ELEMENT_JSON_SIZE = 8192
_NOT_REPEATABLE_VRS = _BINARY_VRS | {"SQ"}


def _repeatable(raw: object, charset: object) -> tuple[int, str, bytes, bool, object] | None:
    """The memo key of a raw element whose JSON depends only on its bytes; None for the rest."""
    if not isinstance(raw, RawDataElement) or raw.VR is None or raw.VR in _NOT_REPEATABLE_VRS:
        return None  # implicit VR (the VR comes from the dictionary), sequences, binary values
    if raw.value is None or len(raw.value) > 256:
        return None  # deferred or long
    return (int(raw.tag), str(raw.VR), bytes(raw.value), raw.is_little_endian, charset)


def read_metadata(path: Path, *, bulk_data_uri: Callable[[str], str]) -> dict[str, Any]:
    """The metadata of a stored instance as DICOM JSON, large values as BulkDataURIs."""
    ds = dcmread(path, defer_size=BULK_DATA_THRESHOLD)
    return to_json(ds, bulk_data_uri=bulk_data_uri)


def from_json(obj: dict[str, Any], *, bulk_data_reader: Callable[[str], bytes] | None = None) -> Dataset:
    """A dataset from a DICOM JSON object (``bulk_data_reader`` fetches BulkDataURI values)."""
    if bulk_data_reader is None:
        return Dataset.from_json(obj)
    reader = bulk_data_reader
    return Dataset.from_json(obj, bulk_data_uri_handler=lambda uri: reader(uri))


@functools.cache
def _tag_and_vr(keyword: str) -> tuple[BaseTag, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"{keyword} is not a DICOM keyword")
    return Tag(tag), dictionary_VR(tag)


def dataset(values: Iterable[tuple[str, Any]]) -> Dataset:
    """A dataset from (keyword, value) pairs; values are not validated (index data is as received)."""
    ds = Dataset()
    for keyword, value in values:
        tag, vr = _tag_and_vr(keyword)
        ds.add(DataElement(tag, vr, value, validation_mode=pydicom_config.IGNORE))
    return ds


def parse_path(path: str) -> list[BaseTag | int]:
    """Split a bulk data path into tags and item numbers.

    Raises
    ------
    ValueError
        When a component is neither an 8-digit hex tag nor an item number where one belongs.
    """
    steps: list[BaseTag | int] = []
    for position, component in enumerate(path.strip("/").split("/")):
        if position % 2 == 0:
            if len(component) != 8:
                raise ValueError(f"{component!r} is not a tag (8 hex digits)")
            steps.append(Tag(int(component, 16)))
        else:
            steps.append(int(component))
    if not steps:
        raise ValueError("empty bulk data path")
    return steps


def bulk_value(ds: Dataset, steps: list[BaseTag | int]) -> DataElement:
    """The element a parsed bulk data path leads to.

    Raises
    ------
    KeyError
        When the path leads nowhere in this dataset.
    """
    current = ds
    for position in range(0, len(steps) - 1, 2):
        sequence = current[steps[position]]
        index = int(steps[position + 1])
        if sequence.VR != "SQ" or not 0 <= index < len(sequence.value):
            raise KeyError(f"no item {index} in {steps[position]}")
        current = sequence.value[index]
    return current[steps[-1]]


def is_pixel_data(steps: list[BaseTag | int]) -> bool:
    """True for the top-level Pixel Data path."""
    return len(steps) == 1 and int(steps[0]) == _PIXEL_DATA
