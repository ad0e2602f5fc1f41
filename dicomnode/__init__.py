"""dicomnode: a DICOM node that receives, files and indexes studies and routes them to AI.

Importing this package has no side effects; see ``dicomnode.cli`` for the entry point.
"""

from __future__ import annotations

__version__ = "0.1.0"
