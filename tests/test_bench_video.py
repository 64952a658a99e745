"""``python -m dit3d.bench video`` reports consistent numbers; its CPU config matches the YAML."""
import json
from pathlib import Path

import yaml

from dit3d.bench import BENCHMARKS, run_benchmark
from dit3d.bench.video import CPU_CONFIG


def test_video_benchmark_quick_with_a_shallow_16_frame_trunk():
    result = run_benchmark("video", quick=True, frames16_batch=1, frames16_depth=1)
    for key in ("step_s", "mfu", "gflop_per_step", "peak_gflops", "f16_factorised_step_s", "f16_joint_step_s"):
        assert result[key] > 0, key
    # attention products: (H'W' + F) / (F H'W') = 80 / 1024 of the joint ones
    assert abs(result["f16_attn_flop_ratio"] - 80 / 1024) < 1e-3
    assert result["f16_step_flop_ratio"] < 1 and result["f16_grid"] == [16, 8, 8]
    assert "video" in BENCHMARKS
    json.dumps(result)


def test_cpu_config_matches_the_yaml():
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs/video/moving_digits_cpu.yaml").read_text())
    model, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    assert CPU_CONFIG == {"trunk": model["trunk"], "patch_size": model["patch_size"],
                          "time_patch": model["time_patch"], "num_frames": model["num_frames"],
                          "image_size": model["image_size"], "attention": model["attention"],
                          "prediction": model["prediction"],
                          "batch": data["batch_size"], "ema_decay": model["ema_decay"]}
    assert data["num_frames"] == model["num_frames"] and data["image_size"] == model["image_size"]
