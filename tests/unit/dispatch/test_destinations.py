"""Destinations: settings discriminated on kind, lookup by name or calling AE, names for a rule."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dicomnode.config import DicomwebDestination, DimseDestination, Settings
from dicomnode.dispatch import destinations
from dicomnode.errors import UnknownDestination

PACS = {"name": "pacs", "ae_title": "PACS", "host": "10.0.0.2", "port": 104}
WEB = {"kind": "dicomweb", "name": "web", "stow_url": "https://archive/dicom-web/studies/"}


def test_kind_defaults_to_dimse_so_c_move_destinations_keep_working() -> None:
    settings = Settings(destinations=[PACS, WEB])
    pacs, web = settings.destinations
    assert isinstance(pacs, DimseDestination) and pacs.kind == "dimse"
    assert isinstance(web, DicomwebDestination) and web.stow_url == "https://archive/dicom-web/studies"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({**WEB, "stow_url": "ftp://archive/studies"}, r"not an http\(s\) URL"),
        ({**WEB, "bearer_token": "t", "basic_user": "u", "basic_password": "p"}, "not both"),
        ({**WEB, "basic_user": "u"}, "go together"),
        ({**WEB, "kind": "smtp"}, "smtp"),
        ({**PACS, "ae_title": "A\\B"}, "not a valid AE title"),
    ],
)
def test_invalid_destinations_are_refused(entry: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError, match=message):
        Settings(destinations=[entry])


def test_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="repeated: pacs"):
        Settings(destinations=[PACS, {**WEB, "name": "pacs"}])


def test_find_by_name_and_by_calling_ae() -> None:
    configured = Settings(destinations=[PACS, WEB]).destinations
    assert destinations.find(configured, "web").name == "web"
    assert destinations.find(configured, "@PACS").name == "pacs"
    with pytest.raises(UnknownDestination, match="configured: pacs, web"):
        destinations.find(configured, "nowhere")
    with pytest.raises(UnknownDestination, match="AE title 'CT01'"):
        destinations.find(configured, "@CT01")


def test_names_for_a_rule() -> None:
    assert destinations.names_for(send_to=["pacs"], send_to_calling_ae=False, calling_ae_titles=["CT01"]) == ["pacs"]
    assert destinations.names_for(
        send_to=["pacs"], send_to_calling_ae=True, calling_ae_titles=["CT01 ", "", "CT01", "MR02"]
    ) == ["pacs", "@CT01", "@MR02"]
