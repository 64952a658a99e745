"""Name -> benchmark function; modules are imported lazily so one benchmark's
dependencies never slow another's start-up."""
from __future__ import annotations

import importlib
import json
import platform
from collections.abc import Callable
from typing import Any

import torch

#: benchmark name -> "module:function" returning a JSON-serialisable dict
BENCHMARKS: dict[str, str] = {
    "trunk": "dit3d.bench.trunk:run",
    "adit-qm9": "dit3d.bench.adit_qm9:run",
    "adit-crystals": "dit3d.bench.adit_crystals:run",
    "dit3d": "dit3d.bench.dit3d:run",
    "image": "dit3d.bench.image:run",
    "video": "dit3d.bench.video:run",
    "threads": "dit3d.bench.threads:run",
}


def environment() -> dict[str, Any]:
    """What a timing depends on: versions, threads, machine."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def run_benchmark(name: str, **kwargs: Any) -> dict[str, Any]:
    """Run benchmark ``name`` with ``kwargs``: its record, after the name and before the environment."""
    if name not in BENCHMARKS:
        raise SystemExit(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    module, func = BENCHMARKS[name].split(":")
    fn: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), func)
    return {"benchmark": name, **fn(**kwargs), "env": environment()}


def to_json_line(result: dict[str, Any]) -> str:
    """``result`` as one JSON line, keys in their order."""
    return json.dumps(result, sort_keys=False)
