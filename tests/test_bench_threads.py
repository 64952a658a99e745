"""bench threads: each case runs the same workload in its own process; ratios line up."""
from dit3d.bench import BENCHMARKS, threads


def test_a_workload_runs_in_a_fresh_process_under_a_case():
    assert BENCHMARKS["threads"] == "dit3d.bench.threads:run"
    seconds = threads._timed("small", "passive", timeout_s=300)
    assert seconds is not None and seconds > 0


def test_a_timeout_is_reported_as_none():
    assert threads._timed("large", "default", timeout_s=0.01) is None


def test_speedups_are_default_over_each_case_per_workload_and_load(monkeypatch):
    times = {"default": 8.0, "passive": 2.0, "one_thread": 4.0}
    monkeypatch.setattr(threads, "_timed", lambda w, case, timeout_s: times[case])
    result = threads.run(quick=True)
    assert result["small_default_busy_s"] == 8.0 and result["small_passive_quiet_s"] == 2.0
    assert result["passive_speedup_small_quiet"] == result["passive_speedup_small_busy"] == 4.0
    assert result["one_thread_speedup_small_busy"] == 2.0 and "large_default_quiet_s" not in result
