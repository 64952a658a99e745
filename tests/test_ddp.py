"""Two CPU processes under Lightning's DDP strategy (gloo): the ranks stay in sync and
only rank 0 writes checkpoints. Runs a small script in a subprocess with a timeout."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = """
import os, sys, torch
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from dit3d.data import DigitsDataModule
from dit3d.models import ImageDiTModule

root = sys.argv[1]

class RecordingIO(TorchCheckpointIO):  # which rank writes what
    def save_checkpoint(self, checkpoint, path, storage_options=None):
        rank = int(os.environ.get("LOCAL_RANK", 0))
        with open(f"{root}/writes_rank{rank}.txt", "a") as f:
            f.write(f"{path}\\n")
        super().save_checkpoint(checkpoint, path, storage_options)

class Dump(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        pl_module._labels = getattr(pl_module, "_labels", []) + [batch["label"].tolist()]

    def on_train_end(self, trainer, pl_module):
        torch.save({"state": pl_module.state_dict(), "labels": pl_module._labels,
                    "world_size": trainer.world_size}, f"{root}/rank{trainer.global_rank}.pt")

seed_everything(0)
model = ImageDiTModule(preset="DiT-Img-Mini/4", image_size=16, in_channels=1, depth=1, hidden_size=48, num_heads=4,
                       lr=2e-3, warmup_steps=1, ema_decay=0.9)
trainer = Trainer(strategy="ddp", accelerator="cpu", devices=2, max_steps=3, limit_train_batches=3,
                  limit_val_batches=0, logger=False, enable_progress_bar=False, enable_model_summary=False,
                  default_root_dir=root, plugins=[RecordingIO()],
                  callbacks=[Dump(), ModelCheckpoint(dirpath=root + "/ckpt", every_n_train_steps=1, save_top_k=-1,
                                                     save_last=True)])
trainer.fit(model, datamodule=DigitsDataModule(batch_size=8, image_size=16))
"""


def test_two_cpu_ranks_stay_in_sync_and_rank0_alone_writes(tmp_path):
    pytest.importorskip("sklearn")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    script = tmp_path / "ddp_fit.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=tmp_path, env=env, timeout=240,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["labels"] != r1["labels"]  # each rank saw its own shard of the data ...
    assert r0["state"].keys() == r1["state"].keys()
    for name, value in r0["state"].items():  # ... and the gradients were averaged: same weights, EMA included
        assert torch.equal(value, r1["state"][name]), name
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in r0["state"].items() if "final" in k)  # it trained
    writes = (tmp_path / "writes_rank0.txt").read_text().splitlines()
    assert not (tmp_path / "writes_rank1.txt").exists()
    assert len(writes) >= 3 and sorted(os.listdir(tmp_path / "ckpt")) == [
        "epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt", "epoch=0-step=3.ckpt", "last.ckpt"]
