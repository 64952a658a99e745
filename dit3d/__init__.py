"""dit3d: Diffusion Transformers for 3D and molecular generation.

One shared DiT trunk (:mod:`dit3d.nn`), objectives and samplers (:mod:`dit3d.objectives`),
tokenizers per domain (:mod:`dit3d.tokenizers`), Lightning systems (:mod:`dit3d.models`),
data (:mod:`dit3d.data`), chemistry I/O (:mod:`dit3d.chem`) and metrics
(:mod:`dit3d.metrics`). Generators are importable from the top level:

    >>> import dit3d
    >>> dit3d.MoleculeGenerator.KIND, dit3d.CrystalGenerator.KIND, dit3d.ShapeGenerator.KIND
    ('adit-molecules', 'adit-crystals', 'dit3d-pointclouds')

Long sampling or training in your own script runs faster (int8 sampling most) after
``dit3d.retain_freed_memory()`` (:mod:`dit3d.allocator`), which the ``dit3d`` command calls itself.
"""
from __future__ import annotations

from typing import Any

from dit3d.allocator import retain_freed_memory

__version__ = "0.1.0"
__all__ = ["CrystalGenerator", "ImageGenerator", "MoleculeGenerator", "ShapeGenerator", "VideoGenerator",
           "__version__", "retain_freed_memory"]

#: top-level generator -> the module defining it
_GENERATORS = {"MoleculeGenerator": "dit3d.api", "CrystalGenerator": "dit3d.api_crystals",
               "ShapeGenerator": "dit3d.api_shapes", "ImageGenerator": "dit3d.api_images",
               "VideoGenerator": "dit3d.api_video"}


def __getattr__(name: str) -> Any:
    # Generators pull in RDKit, pymatgen and model code; import them on first use so
    # `import dit3d` stays light.
    if name in _GENERATORS:
        import importlib

        return getattr(importlib.import_module(_GENERATORS[name]), name)
    raise AttributeError(f"module 'dit3d' has no attribute {name!r}")
