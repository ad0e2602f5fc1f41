"""Find a Pipeline class by name: the built-ins, then the "dicomnode.pipelines" entry points.

Built-ins are listed as ``"module:Class"`` strings and imported only when asked
for, so listing pipelines never imports torch. A third-party distribution adds a
pipeline by declaring, in its pyproject.toml::

    [project.entry-points."dicomnode.pipelines"]
    my_pipeline = "my_package.pipeline:MyPipeline"

An entry point cannot replace a built-in of the same name (it is ignored, with
a warning in the log). Installing such a distribution is an admin's act: a
pipeline is code.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from importlib.metadata import entry_points
from types import MappingProxyType

from ai_pipelines.base import Pipeline

__all__ = ["BUILT_INS", "ENTRY_POINT_GROUP", "UnknownPipeline", "available", "load"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dicomnode.pipelines"

#: Pipelines shipped with this package, name -> "module:Class" (imported lazily).
BUILT_INS: Mapping[str, str] = MappingProxyType({
    "brain_tumour_seg": "ai_pipelines.brain_tumour_seg.pipeline:BrainTumourSegmentation",
    "denoise": "ai_pipelines.denoise.pipeline:DenoisePipeline",
    "key_image_montage": "ai_pipelines.montage.pipeline:KeyImageMontage",
    "lung_nodules": "ai_pipelines.lung_nodules.pipeline:LungNodules",
    "synth_ct": "ai_pipelines.synth_ct.pipeline:SynthCT",
})


class UnknownPipeline(LookupError):
    """No built-in pipeline or entry point has this name."""


def available(*, built_ins: Mapping[str, str] = BUILT_INS) -> dict[str, str]:
    """List the pipelines that can be loaded.

    Parameters
    ----------
    built_ins : Mapping[str, str], optional
        Built-in table, name -> ``"module:Class"``.

    Returns
    -------
    dict[str, str]
        Name -> ``"module:Class"``, sorted by name; built-ins win over entry points.
    """
    found = dict(built_ins)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in found:
            if found[entry.name] != entry.value:
                logger.warning(
                    "pipeline entry point ignored",
                    extra={"action": "registry", "pipeline": entry.name, "target": entry.value},
                )
            continue
        found[entry.name] = entry.value
    return dict(sorted(found.items()))


def load(name: str, *, built_ins: Mapping[str, str] = BUILT_INS) -> type[Pipeline]:
    """Import the Pipeline class registered under ``name``.

    Parameters
    ----------
    name : str
        Pipeline name, as used in routing rules.
    built_ins : Mapping[str, str], optional
        Built-in table, name -> ``"module:Class"``.

    Returns
    -------
    type[Pipeline]
        The class (not an instance).

    Raises
    ------
    UnknownPipeline
        If no pipeline has this name.
    TypeError
        If the target is not a Pipeline subclass or declares a different name.
    ImportError
        If the target module cannot be imported.
    """
    table = available(built_ins=built_ins)
    if name not in table:
        known = ", ".join(table) or "none"
        raise UnknownPipeline(f"no pipeline named {name!r} (known: {known})")
    target = table[name]
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise TypeError(f"pipeline {name!r} points at {target!r}; expected 'module:Class'")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Pipeline)):
        raise TypeError(f"pipeline {name!r} points at {target!r}, which is not a Pipeline class")
    if obj.name != name:
        raise TypeError(f"pipeline {name!r} points at {target!r}, which declares name {obj.name!r}")
    return obj
