"""DIMSE: the SCP (echo, store) and SCU helpers, on pynetdicom.

May import ``dicomnode.store`` and below; never enqueues jobs.
"""

from __future__ import annotations
