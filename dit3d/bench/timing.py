"""Timing helpers shared by the benchmarks."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in seconds after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fresh_process_output(code: str, env: Mapping[str, str] | None = None, timeout_s: float | None = None) -> str:
    """The last line ``python -c code`` prints, run in a fresh interpreter: for timings that
    must not inherit this process's allocator state, thread pools or environment.

    Args:
        code: Python source; its last printed line is the result.
        env: the child's whole environment (default: this process's).
        timeout_s: seconds before the child is killed and
            :class:`subprocess.TimeoutExpired` raised (default: no limit).

    Raises:
        RuntimeError: the child failed or printed nothing; the message carries its stderr's tail.
    """
    out = subprocess.run([sys.executable, "-c", code], env=dict(env) if env is not None else os.environ.copy(),
                         capture_output=True, text=True, timeout=timeout_s)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child `python -c {code!r}` exited with {out.returncode}"
                           f"{'' if lines else ' and printed nothing'}: {out.stderr.strip()[-2000:]}")
    return lines[-1]


def _cpu_attention_formulas() -> dict:
    """FlopCounterMode knows the CUDA attention kernels but not the CPU flash kernel that
    ``scaled_dot_product_attention`` dispatches to here; count it with the same formulas
    (QK^T and PV forward, twice that backward; no recomputation counted)."""
    aten = torch.ops.aten
    names = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention_for_cpu_backward")
    if not all(hasattr(aten, n) for n in names):
        return {}

    def forward(q, k, v, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(q, k, v)

    def backward(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_backward_flop_count(grad_out, q, k, v)

    return {getattr(aten, names[0]): forward, getattr(aten, names[1]): backward}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matmuls and attention that ``fn()`` executes (torch's FlopCounterMode,
    which counts a multiply-add as 2 FLOPs and includes the backward pass if ``fn`` runs it)."""
    with FlopCounterMode(display=False, custom_mapping=_cpu_attention_formulas()) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best achieved fp32 GFLOP/s of an ``n x n`` by ``n x n`` matmul: the practical peak
    that model FLOP utilisation is measured against."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9
