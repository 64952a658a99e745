"""retain_freed_memory: freed blocks stay in the process; the user's own settings win.

Each case runs in a fresh interpreter: mallopt settings last for the process, and this
test process may have applied them already (the CLI tests call ``dit3d``'s main)."""
import os
import subprocess
import sys

import pytest

from dit3d import allocator
from dit3d.bench import BENCHMARKS, malloc

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# allocate and touch 24 MiB, free it, and report how much of it is still resident
CHILD = """
import sys, torch
from dit3d.allocator import retain_freed_memory, retaining_freed_memory
from dit3d.memory import rss_bytes
applied = retain_freed_memory() if sys.argv[1] == "1" else False
assert retaining_freed_memory() == applied
before = rss_bytes()
x = torch.ones(6 << 20)
del x
print(applied, (rss_bytes() - before) / 2**20)
"""


def run_child(retain: bool, **env: str) -> tuple[bool, float]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "DIT3D_RETAIN"))} | env
    out = subprocess.run([sys.executable, "-c", CHILD, "1" if retain else "0"], env=environ, capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == "True", float(out[1])


def test_freed_memory_is_kept_only_when_retained():
    applied, kept_mib = run_child(True)
    assert applied and kept_mib > 20  # the 24 MiB block went back to the heap, not to the kernel
    applied, kept_mib = run_child(False)
    assert not applied and kept_mib < 4  # glibc's default: a fresh mmap, unmapped on free


@pytest.mark.parametrize("name, value", [("DIT3D_RETAIN_FREED_MEMORY", "0"), ("MALLOC_TRIM_THRESHOLD_", "131072"),
                                         ("LD_PRELOAD", "libjemalloc.so.2")])
def test_an_opt_out_or_the_users_own_malloc_settings_are_left_alone(monkeypatch, name, value):
    monkeypatch.setattr(allocator, "_applied", False)  # as in a fresh process; these paths never call mallopt
    monkeypatch.setenv(name, value)
    assert not allocator.retain_freed_memory() and not allocator.retaining_freed_memory()


def test_malloc_bench_runs_each_case_in_its_own_process():
    assert BENCHMARKS["malloc"] == "dit3d.bench.malloc:run"
    default = malloc._timed("dit3d_denoise_int8", False, repeats=1, depth=1)
    retained = malloc._timed("dit3d_denoise_int8", True, repeats=1, depth=1)
    assert not default["applied"] and retained["applied"]
    assert default["seconds"] > 0 and retained["seconds"] > 0


def test_speedups_are_default_over_retained(monkeypatch):
    times = {False: {"seconds": 3.0, "applied": False}, True: {"seconds": 2.0, "applied": True}}
    monkeypatch.setattr(malloc, "_timed", lambda workload, retain, repeats: times[retain])
    result = malloc.run(quick=True)
    assert result["dit3d_denoise_default_s"] == 3.0 and result["dit3d_denoise_retained_s"] == 2.0
    assert result["dit3d_denoise_int8_speedup"] == 1.5 and result["applied"] and "dit3d_train_speedup" not in result


def test_the_dit3d_command_applies_it(monkeypatch, capsys):
    from dit3d.cli import main

    for name in ("DIT3D_RETAIN_FREED_MEMORY", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(allocator, "_applied", False)
    main(["presets"])
    assert allocator.retaining_freed_memory()
    assert "DiT-S" in capsys.readouterr().out
