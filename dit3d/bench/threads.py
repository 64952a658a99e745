"""``python -m dit3d.bench threads``: torch's CPU threads beside another busy process, side by side.

Torch's CPU kernels run on OpenMP threads, by default one per core. When another process
holds one of the cores, the machine is oversubscribed: each parallel op waits for a
descheduled sibling thread, and libgomp's default policy has waiting threads spin first,
which small models feel most. Two remedies, each read when torch loads, so every case
runs in a fresh subprocess with the same workload:

- ``default``: the caller's environment (two threads on the 2-core machines here);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE``, waiting threads sleep at once;
- ``one_thread``: ``OMP_NUM_THREADS=1``, no sibling to wait for.

Workloads: ``small``, 30 AdamW steps of a DiT-Mini trunk (4 blocks, 96 wide) on 64 sets of 8
tokens (the size of ``examples/quickstart.py``); ``large``, 2 train steps of a DiT-S
trunk (12 blocks, 384 wide) on 8 x 512 tokens (a DiT-3D grid). Each runs on a quiet
machine and beside a one-thread torch process doing matmuls (``busy``).

Keys: ``{workload}_{case}_{load}_s`` (seconds; ``None`` past ``timeout_s``) and
``{case}_speedup_{workload}_{load}``, the default case's time over that case's (above 1:
faster than the default).
"""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import time
from typing import Any

WORKLOADS = ("small", "large")


def _busy(stop: Any) -> None:
    import torch

    torch.set_num_threads(1)  # another one-thread torch job, e.g. an evaluation run
    a = torch.randn(256, 256)
    while not stop.is_set():
        a = torch.tanh(a @ a)


def _child(workload: str) -> float:
    import torch

    from dit3d.nn import build_trunk

    torch.manual_seed(0)
    if workload == "small":
        trunk, x, steps = build_trunk("DiT-Mini", out_dim=2), torch.randn(64, 8, 96), 30
    else:
        trunk, x, steps = build_trunk("DiT-S", out_dim=8), torch.randn(8, 512, 384), 2
    c = torch.randn(x.shape[0], x.shape[-1])
    opt = torch.optim.AdamW(trunk.parameters(), lr=1e-4)
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        trunk(x, c).square().mean().backward()
        opt.step()
    return time.perf_counter() - start


#: case name -> environment it runs under (over the caller's, minus OMP_WAIT_POLICY)
CASES: dict[str, dict[str, str]] = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
                                    "one_thread": {"OMP_NUM_THREADS": "1"}}


def _timed(workload: str, case: str, timeout_s: float) -> float | None:
    from dit3d.bench.timing import fresh_process_output

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(CASES[case])
    code = f"from dit3d.bench.threads import _child; print(_child({workload!r}))"
    try:
        return round(float(fresh_process_output(code, env, timeout_s)), 3)
    except subprocess.TimeoutExpired:
        return None


def run(quick: bool = False, timeout_s: float = 300.0) -> dict[str, Any]:
    """Time the workloads under each thread setting, quiet and beside a busy process; returns the JSON record."""
    result: dict[str, Any] = {"cores": os.cpu_count(), "timeout_s": timeout_s,
                              "default_threads": os.environ.get("OMP_NUM_THREADS", "unset (one per core)")}
    workloads = ("small",) if quick else WORKLOADS
    for load in ("quiet", "busy"):
        stop = multiprocessing.Event()
        spinner = multiprocessing.Process(target=_busy, args=(stop,)) if load == "busy" else None
        if spinner is not None:
            spinner.start()
        try:
            for w in workloads:
                for case in CASES:
                    result[f"{w}_{case}_{load}_s"] = _timed(w, case, timeout_s)
        finally:
            if spinner is not None:
                stop.set()
                spinner.join()
    for key in [k for k in result if k.endswith("_default_quiet_s") or k.endswith("_default_busy_s")]:
        default = result[key]
        for case in ("passive", "one_thread"):
            other = result[key.replace("_default_", f"_{case}_")]
            ratio = None if default is None or not other else round(default / other, 2)
            result[f"{case}_speedup_" + key.replace("_default", "")[:-2]] = ratio
    return result
