"""Name -> benchmark function; modules are imported lazily so one benchmark's
dependencies never slow another's start-up."""
from __future__ import annotations

import importlib
import inspect
import json
import platform
from collections.abc import Callable
from typing import Any

import torch

from dit3d.allocator import retaining_freed_memory

#: benchmark name -> "module:function" returning a JSON-serialisable dict
BENCHMARKS: dict[str, str] = {
    "trunk": "dit3d.bench.trunk:run",
    "adit-qm9": "dit3d.bench.adit_qm9:run",
    "adit-crystals": "dit3d.bench.adit_crystals:run",
    "adit-crystals-compare": "dit3d.bench.adit_crystals:compare",
    "dit3d": "dit3d.bench.dit3d:run",
    "gelu": "dit3d.bench.gelu:run",
    "image": "dit3d.bench.image:run",
    "video": "dit3d.bench.video:run",
    "threads": "dit3d.bench.threads:run",
    "malloc": "dit3d.bench.malloc:run",
}


def environment() -> dict[str, Any]:
    """What a timing depends on: versions, threads, machine."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "malloc": "retain-freed" if retaining_freed_memory() else "default",
    }


def _function(name: str) -> Callable[..., dict[str, Any]]:
    if name not in BENCHMARKS:
        raise SystemExit(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    module, func = BENCHMARKS[name].split(":")
    return getattr(importlib.import_module(module), func)


def benchmark_parameters(name: str) -> set[str]:
    """The keyword arguments benchmark ``name`` takes (what its command-line options may set)."""
    return set(inspect.signature(_function(name)).parameters)


def run_benchmark(name: str, **kwargs: Any) -> dict[str, Any]:
    """Run benchmark ``name`` with ``kwargs``: its record, after the name and before the environment."""
    return {"benchmark": name, **_function(name)(**kwargs), "env": environment()}


def to_json_line(result: dict[str, Any]) -> str:
    """``result`` as one JSON line, keys in their order."""
    return json.dumps(result, sort_keys=False)
