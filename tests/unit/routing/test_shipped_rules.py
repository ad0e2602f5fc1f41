"""The rules in conf/rules.yaml send each kind of series to the pipelines meant for it, and no further."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dicomnode.routing.match import SeriesAttributes, select_rules
from dicomnode.routing.rules import load_rules

RULES = load_rules((Path(__file__).resolve().parents[3] / "conf" / "rules.yaml").read_text())


def _pipelines(instance_count: int = 120, **attributes: Any) -> set[str]:
    attrs = SeriesAttributes(attributes={"ImageType": ("ORIGINAL", "PRIMARY", "AXIAL"), **attributes},
                             instance_count=instance_count, calling_ae_title="SCANNER", peer_host="10.0.0.5")
    return {step.pipeline for rule in select_rules(RULES, attrs) for step in rule.run} - {"key_image_montage"}


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"Modality": "MR", "BodyPartExamined": "BRAIN", "SeriesDescription": "AX FLAIR"}, {"brain_tumour_seg"}),
        ({"Modality": "MR", "BodyPartExamined": "HEAD", "SeriesDescription": "T1 MPRAGE +C"}, {"brain_tumour_seg"}),
        ({"Modality": "MR", "SeriesDescription": "Brain T1CE axial"}, {"brain_tumour_seg"}),
        ({"Modality": "MR", "BodyPartExamined": "BRAIN", "SeriesDescription": "AX T2 TSE"}, set()),
        ({"Modality": "MR", "BodyPartExamined": "KNEE", "SeriesDescription": "PD FLAIR"}, set()),
        ({"Modality": "CT", "BodyPartExamined": "CHEST", "SeriesDescription": "Thorax 1.0 B70f",
          "SliceThickness": 1.0}, {"lung_nodules"}),
        ({"Modality": "CT", "SeriesDescription": "LUNG SCREENING", "SliceThickness": "1.25"}, {"lung_nodules"}),
        ({"Modality": "CT", "BodyPartExamined": "CHEST", "SliceThickness": 5.0}, set()),  # too thick for nodules
        ({"Modality": "CT", "BodyPartExamined": "CHEST", "SeriesDescription": "Low dose lung screening",
          "SliceThickness": 1.0}, {"lung_nodules", "denoise"}),
        ({"Modality": "CT", "BodyPartExamined": "ABDOMEN", "SeriesDescription": "LDCT abdomen"}, {"denoise"}),
        ({"Modality": "MR", "BodyPartExamined": "PELVIS", "SeriesDescription": "T2 TSE RT planning"}, {"synth_ct"}),
        ({"Modality": "MR", "BodyPartExamined": "HEAD", "SeriesDescription": "T1 RT planning accelerated"},
         {"synth_ct", "denoise"}),
        ({"Modality": "MR", "BodyPartExamined": "PELVIS", "SeriesDescription": "T2 TSE sag"}, set()),
        ({"Modality": "US", "SeriesDescription": "low dose"}, set()),
    ],
)
def test_shipped_rules_route_by_modality_body_part_description_and_thickness(
    attributes: dict[str, Any], expected: set[str]
) -> None:
    assert _pipelines(**attributes) == expected


def test_derived_series_and_short_series_are_not_routed_to_ai() -> None:
    derived = {"Modality": "CT", "BodyPartExamined": "CHEST", "SliceThickness": 1.0,
               "SeriesDescription": "AI synthetic CT", "ImageType": ("DERIVED", "SECONDARY")}
    assert _pipelines(**derived) == set()
    assert _pipelines(instance_count=5, Modality="MR", BodyPartExamined="BRAIN", SeriesDescription="FLAIR") == set()
