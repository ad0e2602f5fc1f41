"""Real anatomy loaders: shapes, units and orientation of the installed sources."""

from __future__ import annotations

import numpy as np
import pytest

from ai_pipelines.synthetic import anatomy


def _or_skip(loader):  # type: ignore[no-untyped-def]
    try:
        return loader()
    except anatomy.AnatomyUnavailable as exc:  # the test command installs them; a bare machine may not
        pytest.skip(str(exc))


def test_head_ct_is_in_hu_with_the_face_anterior_and_the_vault_on_top() -> None:
    volume = _or_skip(anatomy.head_ct)
    values = volume.values
    assert values.shape == (108, 256, 256)
    assert volume.spacing == pytest.approx((1.5, 0.957, 0.957), abs=1e-3)
    assert values.min() == -1024 and values.max() > 1500  # air and cortical bone in HU
    bone = values > 300
    # Anterior is up (low y): at face level (z 20) the head reaches further forward than near
    # the vertex (z 90), and the head holder behind it touches the posterior edge, not the top.
    head = values > -300
    face_front, vertex_front = (int(np.nonzero(head[z])[0].min()) for z in (20, 90))
    assert 0 < face_front < vertex_front
    assert head[:, -1].any() and not head[:, 0].any()
    assert bone[-10:].sum() > 0
    assert head[-5:].sum() < head[50].sum()  # the head narrows towards the vertex


def test_abdomen_ct_is_in_hu_sorted_feet_to_head() -> None:
    volume = _or_skip(anatomy.abdomen_ct)
    assert volume.values.shape == (20, 512, 512)
    assert volume.values.min() <= -1000 and 30 < np.median(volume.values[volume.values > -200]) < 200
    assert volume.spacing[0] > 0


@pytest.mark.parametrize("loader", [anatomy.colin27_t1, anatomy.mni_t1])
def test_brain_templates_are_lps_ordered(loader) -> None:  # type: ignore[no-untyped-def]
    volume = _or_skip(loader)
    values = volume.values
    brain = values > np.percentile(values, 60)
    z, y, _ = (np.nonzero(brain)[axis].mean() for axis in range(3))
    assert 0.3 < z / values.shape[0] < 0.7
    # The cerebellum is posterior and inferior: the lowest brain slices lie behind the centre.
    low = brain[: int(np.nonzero(brain.any(axis=(1, 2)))[0].min()) + 15]
    assert np.nonzero(low)[1].mean() > y
