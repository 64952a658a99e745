"""``python -m dit3d.bench malloc``: glibc's default malloc against :func:`~dit3d.allocator.retain_freed_memory`, side by side.

``mallopt`` settings cannot be undone for memory already handed out, so every case runs
in a fresh subprocess with the same seeded workload, the two cases of a workload one
after the other:

- ``dit3d_denoise`` / ``dit3d_denoise_int8``: one denoising forward of DiT-3D-S/4 at
  batch 8 x 2048 points (no grad), float and with the trunk's dense layers in int8;
- ``dit3d_train``: one DDPM train step of the same model (forward, backward, AdamW);
- ``adit_sample_int8``: sampling and decoding 100 molecules with the shipped
  ``adit-qm9-cpu`` in int8 (its default solver and steps, seed 0).

Keys: ``{workload}_{default|retained}_s`` (median seconds after a warm-up call) and
``{workload}_speedup``, default over retained (above 1: retaining is faster); ``applied``
says whether ``mallopt`` took the setting in the child (False off glibc: then both cases
are the same).
"""
from __future__ import annotations

import json
from typing import Any

WORKLOADS = ("dit3d_denoise", "dit3d_denoise_int8", "dit3d_train", "adit_sample_int8")


def _child(workload: str, retain: bool, repeats: int, depth: int | None = None) -> dict[str, Any]:
    """Time ``workload`` in this (fresh) process, after applying the setting if ``retain``
    (``depth``: fewer blocks than the preset's, for tests)."""
    from dit3d.allocator import retain_freed_memory

    applied = retain_freed_memory() if retain else False
    if workload == "adit_sample_int8":
        return {"seconds": round(_adit_sample_time(repeats), 3), "applied": applied}
    import torch

    from dit3d.bench.dit3d import denoise_time, make_module, step_times
    from dit3d.nn.quantize import quantize_int8

    module = make_module("DiT-3D-S/4", False, depth, 32)
    g = torch.Generator().manual_seed(0)
    points, labels = torch.randn(8, 2048, 3, generator=g), torch.zeros(8, dtype=torch.long)
    if workload == "dit3d_train":
        seconds = step_times(module, points, labels, repeats)["train_step_s"]
    else:
        module.model.eval()
        if workload.endswith("int8"):
            quantize_int8(module.model)
        seconds = denoise_time(module, points, labels, repeats)
    return {"seconds": round(seconds, 3), "applied": applied}


def _adit_sample_time(repeats: int) -> float:
    """Median seconds to sample and decode 100 molecules with ``adit-qm9-cpu`` in int8."""
    from dit3d.api import MoleculeGenerator
    from dit3d.bench.timing import median_time

    gen = MoleculeGenerator.from_pretrained("adit-qm9-cpu")
    gen.quantize_int8()
    return median_time(lambda: gen.sample_arrays(100, seed=0), repeats, warmup=1)


def _timed(workload: str, retain: bool, repeats: int, depth: int | None = None) -> dict[str, Any]:
    """``_child``'s record from a fresh Python process."""
    from dit3d.bench.timing import fresh_process_output

    code = ("import json; from dit3d.bench.malloc import _child; "
            f"print(json.dumps(_child({workload!r}, {retain}, {repeats}, {depth})))")
    return json.loads(fresh_process_output(code))


def run(quick: bool = False) -> dict[str, Any]:
    """Time each workload with glibc's default malloc and with freed memory retained; returns the JSON record."""
    repeats = 1 if quick else 3
    result: dict[str, Any] = {"preset": "DiT-3D-S/4", "batch": 8, "num_points": 2048, "repeats": repeats}
    for workload in WORKLOADS[:2] if quick else WORKLOADS:
        default, retained = _timed(workload, False, repeats), _timed(workload, True, repeats)
        result[f"{workload}_default_s"], result[f"{workload}_retained_s"] = default["seconds"], retained["seconds"]
        result[f"{workload}_speedup"] = round(default["seconds"] / retained["seconds"], 2)
        result["applied"] = retained["applied"]
    return result
