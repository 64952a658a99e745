"""Memory limits: sizes parse, estimates bound what the point-cloud protocol really
allocates, over-limit work is refused before it starts, and MemoryGuard stops training."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer

from dit3d.cli import main
from dit3d.memory import MemoryGuard, MemoryLimitError, parse_size, peak_rss_bytes, refuse_if_over, rss_bytes
from dit3d.metrics.pointcloud_pairwise import evaluation_memory_bytes


@pytest.mark.parametrize("text, expected", [("8G", 8 * 10**9), ("8 GB", 8 * 10**9), ("8GiB", 8 * 2**30),
                                            ("1.5MiB", int(1.5 * 2**20)), ("512kb", 512_000), (4096, 4096)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text, match", [("8X", "unknown unit"), ("lots", "cannot read"), ("0G", "positive"),
                                         (-1, "positive"), ("", "cannot read")])
def test_parse_size_rejects(text, match):
    with pytest.raises(ValueError, match=match):
        parse_size(text)


def test_rss_is_measured():
    assert 0 < rss_bytes() <= peak_rss_bytes() * 1.01


def test_refuse_if_over_says_what_and_how_much():
    refuse_if_over(10**6, None, "x", "y")  # no limit
    refuse_if_over(10**6, rss_bytes() + 10**9, "x", "y")
    with pytest.raises(MemoryLimitError, match=r"the job would need about .* over the limit of .*; do less"):
        refuse_if_over(10**9, rss_bytes() + 10**6, "the job", "do less")


MEASURE = textwrap.dedent("""
    import sys, numpy as np, torch
    from dit3d.memory import peak_rss_bytes
    from dit3d.metrics.pointclouds import evaluate_pointclouds
    m, n, emd = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, n, 3)), rng.standard_normal((m, n, 3))
    evaluate_pointclouds(a[:2, :64], b[:2, :64], emd=emd)  # warm the code paths at tiny size
    before = peak_rss_bytes()
    evaluate_pointclouds(a, b, emd=emd)
    print(peak_rss_bytes() - before)
""")


@pytest.mark.parametrize("emd", ["approx", "exact"])
def test_protocol_memory_estimate_bounds_the_measured_peak(emd):
    m, n = (6, 1536) if emd == "approx" else (3, 256)
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(m), str(n), emd], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    measured = int(proc.stdout.split()[-1])
    estimate = evaluation_memory_bytes(m, m, n, emd)
    assert measured <= estimate, (measured, estimate)


def test_evaluate_command_refuses_before_computing(tmp_path):
    clouds = np.random.default_rng(0).standard_normal((4, 512, 3)).astype(np.float32)
    np.save(tmp_path / "s.npy", clouds)
    with pytest.raises(SystemExit, match=r"over the limit of .*--max-memory"):
        main(["evaluate", "pointclouds", str(tmp_path / "s.npy"), "--reference", str(tmp_path / "s.npy"),
              "--max-memory", "1M", "--out", str(tmp_path / "r.json")])
    assert not (tmp_path / "r.json").exists()


class Tiny(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).square().mean()

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(32, 4)), batch_size=4)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class TinyData(LightningDataModule):
    def train_dataloader(self):
        return Tiny().train_dataloader()


def fit(guard: MemoryGuard, steps: int = 3) -> Trainer:
    trainer = Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[guard])
    trainer.fit(Tiny())
    return trainer


def test_memory_guard_stops_a_run_over_its_limit_at_the_first_step():
    guard = MemoryGuard("1M")
    with pytest.raises(MemoryLimitError, match="at step 1, over the limit of 976.56 KiB"):
        fit(guard)
    generous = MemoryGuard(rss_bytes() + 2**30)
    assert fit(generous).global_step == 3 and generous.peak > 0
    with pytest.raises(ValueError, match="check_every_n_steps"):
        MemoryGuard("1G", check_every_n_steps=0)


def test_dit3d_fit_with_memory_guard_exits_with_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"dit3d fit: error: training uses .* over the limit"):
        main(["fit", "--model", "test_memory.Tiny", "--data", "test_memory.TinyData", "--trainer.max_steps", "2", "--trainer.logger", "false",
              "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", str(tmp_path), "--trainer.callbacks+=dit3d.memory.MemoryGuard",
              "--trainer.callbacks.limit=1M"])
