"""Benchmarks run and report consistent numbers (tiny preset here; the real one is slow)."""
import json
import os
import subprocess
import sys

import pytest

from dit3d.bench import BENCHMARKS, run_benchmark
from dit3d.bench.timing import count_flops, fresh_process_output, median_time


def test_flop_count_of_a_matmul_and_attention():
    import torch

    a, b = torch.randn(8, 16), torch.randn(16, 4)
    assert count_flops(lambda: a @ b) == 2 * 8 * 16 * 4
    q = torch.randn(1, 2, 5, 8)  # (B, H, T, Dh): QK^T and PV, 2*B*H*T*T*Dh FLOPs each
    assert count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q)) == 2 * (2 * 2 * 5 * 5 * 8)
    assert median_time(lambda: None, repeats=3) >= 0


def test_fresh_process_output_last_line_env_errors_and_timeout():
    assert fresh_process_output("print('a'); print('b')") == "b"
    code = "import os; print(os.environ.get('DIT3D_PROBE'))"
    assert fresh_process_output(code, env={**os.environ, "DIT3D_PROBE": "x"}) == "x"
    with pytest.raises(RuntimeError, match="(?s)exited with 1.*ZeroDivisionError"):
        fresh_process_output("print(1); 1 / 0")
    with pytest.raises(RuntimeError, match="printed nothing"):
        fresh_process_output("pass")
    with pytest.raises(subprocess.TimeoutExpired):
        fresh_process_output("import time; time.sleep(30)", timeout_s=0.5)


def test_trunk_benchmark_tiny_preset():
    result = run_benchmark("trunk", quick=True, preset="DiT-Mini")
    for key in ("step_s_qm9", "step_s_512", "mfu_qm9", "mfu_512", "peak_gflops"):
        assert result[key] > 0, key
    assert 0 < result["mfu_512"] <= 1.5  # a tiny model can't beat the peak by much
    assert abs(result["qm9_padding_fraction"] - 0.193) < 0.01
    json.dumps(result)
    assert set(BENCHMARKS) >= {"trunk"}


@pytest.mark.slow
def test_trunk_benchmark_cli_prints_one_json_line():
    proc = subprocess.run([sys.executable, "-m", "dit3d.bench", "trunk", "--quick"],
                          capture_output=True, text=True, timeout=900)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and len(lines) == 1
    assert json.loads(lines[0])["preset"] == "DiT-S"


@pytest.mark.slow
def test_adit_qm9_benchmark_prints_one_json_line():
    proc = subprocess.run([sys.executable, "-m", "dit3d.bench", "adit-qm9", "--quick"],
                          capture_output=True, text=True, timeout=1800)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and len(lines) == 1, proc.stderr[-2000:]
    result = json.loads(lines[0])
    for key in ("vae_step_s", "dit_step_s", "sample_100_s", "validity", "mol_stability", "uniqueness",
                "sample_100_int8_s", "sample_100_unguided_s"):  # the shipped model samples with autoguidance
        assert result[key] >= 0, key
    assert 0 <= result["int8"]["validity"] <= 1


@pytest.mark.slow
def test_adit_crystals_benchmark_prints_one_json_line():
    proc = subprocess.run([sys.executable, "-m", "dit3d.bench", "adit-crystals", "--quick"],
                          capture_output=True, text=True, timeout=3600)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and len(lines) == 1, proc.stderr[-2000:]
    result = json.loads(lines[0])
    for key in ("joint_step_s", "joint_vae_step_s", "sample_100_s", "struct_validity", "comp_validity",
                "cov_recall", "cov_precision", "wdist_density", "wdist_num_elements"):
        assert result[key] >= 0, key
    assert result["protocol"]["num_samples"] == 100 and "validity_drop" in result["molecules"]


def test_image_benchmark_tiny_preset_and_cpu_config_matches_yaml():
    from pathlib import Path

    import yaml

    from dit3d.bench.image import CPU_CONFIG

    result = run_benchmark("image", quick=True, preset="DiT-Img-Mini/4", batch=2, image_size=16, in_channels=1)
    for key in ("step_s", "mfu", "gflop_per_step", "cpu_config_step_s", "cpu_config_mfu", "peak_gflops"):
        assert result[key] > 0, key
    assert result["image"] == [1, 16, 16] and result["cpu_config_batch"] == 64
    json.dumps(result)
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs/image/digits_cpu.yaml").read_text())
    model, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    assert CPU_CONFIG == {"preset": model["preset"], "image_size": model["image_size"],
                          "in_channels": model["in_channels"], "batch": data["batch_size"],
                          "num_classes": model["num_classes"], "class_dropout": model["class_dropout"],
                          "ema_decay": model["ema_decay"]}


def test_bench_options_reach_only_benchmarks_that_take_them(capsys, monkeypatch):
    from dit3d.bench.__main__ import main
    from dit3d.bench.registry import benchmark_parameters

    assert {"checkpoints", "seeds", "num_samples"} <= benchmark_parameters("adit-crystals-compare")
    with pytest.raises(SystemExit):
        main(["trunk", "--checkpoint", "adit-joint-cpu", "--seeds", "0"])
    assert "benchmark trunk takes no --checkpoint, --seeds" in capsys.readouterr().err
    from dit3d.cli import main as dit3d_main

    with pytest.raises(SystemExit):  # `dit3d bench` hands every option on
        dit3d_main(["bench", "trunk", "--num-samples", "5"])
    assert "benchmark trunk takes no --num-samples" in capsys.readouterr().err
    assert "mlp_act" in benchmark_parameters("dit3d")
    with pytest.raises(SystemExit):
        main(["trunk", "--mlp-act", "gelu"])
    assert "benchmark trunk takes no --mlp-act" in capsys.readouterr().err
    import dit3d.bench.__main__ as bench_main

    calls = []
    monkeypatch.setattr(bench_main, "run_benchmark", lambda name, **kw: calls.append((name, kw)) or {"ok": 1})
    main(["dit3d", "--quick", "--mlp-act", "gelu"])
    assert calls == [("dit3d", {"quick": True, "mlp_act": "gelu"})]
    monkeypatch.undo()
    with pytest.raises(SystemExit, match="adit-crystals-compare: error: nope: neither a pretrained folder"):
        main(["adit-crystals-compare", "--checkpoint", "nope"])  # models load before any data is read
    for name in ("adit-qm9", "adit-crystals"):  # one model instead of the shipped one, loaded first
        with pytest.raises(SystemExit, match=f"{name}: error: nope: neither a pretrained folder"):
            main([name, "--checkpoint", "nope"])
    with pytest.raises(SystemExit):
        main(["adit-qm9", "--checkpoint", "a", "--checkpoint", "b"])
    assert "benchmark adit-qm9 scores one model: give --checkpoint once" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["adit-crystals-compare", "--num-samples", "0"])
    assert "--num-samples: must be a positive integer, got 0" in capsys.readouterr().err
    from dit3d.bench.adit_crystals import compare

    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        compare(num_samples=0)
    with pytest.raises(ValueError, match="at least one checkpoint and one seed"):
        compare(seeds=())


def test_crystal_comparison_scores_every_model_on_every_seed_and_averages(monkeypatch):
    from dit3d.bench import adit_crystals

    calls = []
    monkeypatch.setattr(adit_crystals, "crystal_data_root", lambda: "root")
    monkeypatch.setattr(adit_crystals, "reference_sets", lambda root: calls.append("sets") or ("ref", "train"))

    class FakeGenerator:
        sampling = {"steps": 25}

        def __init__(self, name):
            self.name = name

    monkeypatch.setattr("dit3d.api.CrystalGenerator.from_pretrained", FakeGenerator)

    def metrics(gen, root, n, seed, sets):  # a stand-in for sampling + CDVAE metrics: value = model + seed
        calls.append((gen.name, seed, n, sets))
        value = {"a": 0.5, "b": 0.7}[gen.name] + 0.1 * seed
        return {**dict.fromkeys(adit_crystals.METRICS, value), "impossible_cells": seed,
                "protocol": {"seed": seed, "num_samples": n}}

    monkeypatch.setattr(adit_crystals, "crystal_metrics", metrics)
    result = adit_crystals.compare(checkpoints=("a", "b"), seeds=(0, 1), num_samples=7)
    assert calls[0] == "sets" and calls.count("sets") == 1  # one reference for all runs
    assert [c[:3] for c in calls[1:]] == [("a", 0, 7), ("a", 1, 7), ("b", 0, 7), ("b", 1, 7)]
    assert all(c[3] == ("ref", "train") for c in calls[1:])
    assert result["models"]["a"]["mean"]["comp_validity"] == 0.55 and result["models"]["b"]["mean"]["validity"] == 0.75
    assert result["models"]["b"]["per_seed"]["1"]["impossible_cells"] == 1
    assert result["protocol"] == {"num_samples": 7} and result["seeds"] == [0, 1]


@pytest.mark.slow
def test_crystal_comparison_cli_on_the_shipped_model():
    proc = subprocess.run([sys.executable, "-m", "dit3d.bench", "adit-crystals-compare", "--quick",
                           "--checkpoint", "adit-joint-cpu", "--seeds", "0", "1"],
                          capture_output=True, text=True, timeout=3600)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and len(lines) == 1, proc.stderr[-2000:]
    model = json.loads(lines[0])["models"]["adit-joint-cpu"]
    assert set(model["per_seed"]) == {"0", "1"}
    per_seed = [model["per_seed"][s]["comp_validity"] for s in ("0", "1")]
    assert model["mean"]["comp_validity"] == pytest.approx(sum(per_seed) / 2, abs=1e-4)


def test_gelu_benchmark_tiny_preset_compares_both_activations():
    result = run_benchmark("gelu", quick=True, preset="DiT-3D-Mini/4", batch=2, num_points=64, depth=1, resolution=8)
    for key in ("op_fwd_ms", "op_fwd_bwd_ms", "train_step_s", "denoise_step_int8_s"):
        assert result[f"{key}_tanh"] > 0 and result[f"{key}_exact"] > 0 and result[f"{key}_ratio"] > 0, key
    assert result["op_shape"] == [2 * 2 ** 3, 4 * 96]  # 8^3 voxels in 4^3 patches, MLP of a 96-wide trunk
    assert 4.6e-4 < result["max_abs_difference"] < 4.8e-4
    json.dumps(result)
