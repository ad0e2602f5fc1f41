"""Synthetic data with known truth: DICOM series and phantoms for tests, training and evaluation.

Everything here is deterministic for a given seed and needs only numpy and pydicom.
Results measured on this data must say so.
"""

from __future__ import annotations
