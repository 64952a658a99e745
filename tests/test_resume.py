"""Exact resume, per domain: K steps uninterrupted against k steps, a checkpoint saved
mid-epoch, and a NEW Trainer resumed from it with ``ckpt_path`` up to K. The per-step
losses after the resume and the final weights (EMA copies included) must match (CPU).

The resumed runs cross an epoch boundary, so data order, per-epoch point draws, the
optimiser, the warm-up scheduler, EMA and the global RNG all have to come back.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from dit3d.data.samplers import EpochShuffleSampler, ResumableDataLoader, SizeGroupedBatchSampler


class LossRecorder(Callback):
    def __init__(self):
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses[trainer.global_step] = float(outputs["loss"])


def fit(make_model, make_data, root, max_steps, every=None, ckpt_path=None, limit_train_batches=1.0):
    seed_everything(0)
    model, data = make_model(), make_data()
    recorder = LossRecorder()
    callbacks = [recorder]
    if every:
        callbacks.append(ModelCheckpoint(dirpath=root, every_n_train_steps=every, save_top_k=-1,
                                         filename="{step}"))
    trainer = Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=root, limit_val_batches=0,
                      limit_train_batches=limit_train_batches, callbacks=callbacks,
                      enable_checkpointing=bool(every), deterministic=True)
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return model, recorder.losses


def assert_resumes_exactly(make_model, make_data, tmp_path, K=6, k=3, **kw):
    full_model, full = fit(make_model, make_data, tmp_path / "full", K, **kw)
    _, first = fit(make_model, make_data, tmp_path / "cut", k, every=k, **kw)
    ckpt = tmp_path / "cut" / f"step={k}.ckpt"
    assert ckpt.exists(), sorted(os.listdir(tmp_path / "cut"))
    resumed_model, rest = fit(make_model, make_data, tmp_path / "resumed", K, ckpt_path=ckpt, **kw)
    assert sorted(first) == list(range(1, k + 1)) and sorted(rest) == list(range(k + 1, K + 1))
    torch.testing.assert_close({**first, **rest}, full, rtol=1e-6, atol=1e-7)
    a, b = full_model.state_dict(), resumed_model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-6, atol=1e-7, msg=f"{name} differs after resume")
    return full_model


# ----------------------------------------------------------------------------- loaders


def test_loader_skips_served_batches_of_the_same_epoch_only():
    ds = list(range(10))
    dl = ResumableDataLoader(ds, batch_size=3, sampler=EpochShuffleSampler(ds, seed=4))
    dl.sampler.set_epoch(2)
    full = [b.tolist() for b in dl]
    it = iter(dl)
    next(it), next(it)
    state = dl.state_dict()
    assert state == {"epoch": 2, "batches_served": 2}
    dl.load_state_dict(state)
    assert [b.tolist() for b in dl] == full[2:]  # same epoch: continue
    assert [b.tolist() for b in dl] == full  # only the first pass skips
    dl.load_state_dict(state)
    dl.sampler.set_epoch(3)
    assert len(list(dl)) == len(full)  # another epoch: start afresh
    dl.load_state_dict({"epoch": None, "batches_served": len(full)})  # an ended pass
    assert len(list(dl)) == len(full)


def test_epoch_orders_depend_on_seed_and_epoch_only():
    s = EpochShuffleSampler(range(20), seed=1)
    first, second = list(s), list(s)
    assert first != second and sorted(first) == list(range(20))
    again = EpochShuffleSampler(range(20), seed=1)
    again.set_epoch(1)
    assert list(again) == second
    assert first == torch.randperm(20, generator=torch.Generator().manual_seed(1)).tolist()  # old epoch-0 order
    g = SizeGroupedBatchSampler(torch.arange(20) % 7, batch_size=4, seed=0)
    g.set_epoch(3)
    sized = SizeGroupedBatchSampler(torch.arange(20) % 7, batch_size=4, seed=0)
    [list(sized) for _ in range(3)]
    assert list(g) == list(sized)


# ----------------------------------------------------------------------------- domains


def test_adit_autoencoder_resumes_exactly_mid_epoch(qm9_root, tmp_path):
    from dit3d.data import QM9DataModule
    from dit3d.models import ADiTAutoencoderModule

    # 64 molecules in batches of 16: 4 per epoch; cut at step 3, resume to 6 (epoch 1)
    assert_resumes_exactly(
        lambda: ADiTAutoencoderModule(hidden_size=32, depth=1, num_heads=4, latent_dim=4, lr=3e-3, warmup_steps=4),
        lambda: QM9DataModule(batch_size=16, train_subset=64, val_subset=16, group_by_size=True), tmp_path)


def test_dit3d_resumes_exactly_mid_epoch(tmp_path):
    from test_pc15k import AIRPLANE, CHAIR, write_tree

    from dit3d.data.pointclouds import PointCloudDataModule
    from dit3d.models import DiT3DModule

    write_tree(tmp_path / "pc", CHAIR, counts=(5, 1, 1), seed=1, scale=0.3)
    write_tree(tmp_path / "pc", AIRPLANE, counts=(3, 1, 1), seed=2)
    # 8 clouds in batches of 3: 3 per epoch; cut at step 2 (mid-epoch 0), resume to 5 (epoch 1)
    model = assert_resumes_exactly(
        lambda: DiT3DModule(preset="DiT-3D-Mini/4", num_classes=2, resolution=8, depth=1, hidden_size=48,
                            num_heads=4, lr=2e-3, warmup_steps=3, ema_decay=0.9),
        lambda: PointCloudDataModule(str(tmp_path / "pc"), ["chair", "airplane"], batch_size=3, num_points=64),
        tmp_path, K=5, k=2)
    assert model.ema_model is not None


def test_image_dit_resumes_exactly_mid_epoch(tmp_path):
    pytest.importorskip("sklearn")
    from dit3d.data import DigitsDataModule
    from dit3d.models import ImageDiTModule

    # epochs cut to 3 batches by limit_train_batches; cut at step 4 (mid-epoch 1), resume to 7
    model = assert_resumes_exactly(
        lambda: ImageDiTModule(preset="DiT-Img-Mini/4", image_size=16, in_channels=1, depth=1, hidden_size=48,
                               num_heads=4, lr=2e-3, warmup_steps=3, ema_decay=0.9),
        lambda: DigitsDataModule(batch_size=16, image_size=16), tmp_path, K=7, k=4, limit_train_batches=3)
    assert model.ema_model is not None


def test_video_dit_resumes_exactly_mid_epoch(tmp_path):
    pytest.importorskip("sklearn")
    from dit3d.data import MovingDigitsDataModule
    from dit3d.models import VideoDiTModule

    # 40 clips in batches of 8 = 5 batches an epoch; cut at step 3 (mid-epoch 0), resume to 7 (into epoch 1).
    # Task masks, t and noise come from the global RNG, so this also checks its restoration.
    model = assert_resumes_exactly(
        lambda: VideoDiTModule(patch_size=8, num_frames=4, image_size=16, depth=1, hidden_size=48, num_heads=4,
                               prediction="v", lr=2e-3, warmup_steps=3, ema_decay=0.9),
        lambda: MovingDigitsDataModule(batch_size=8, num_frames=4, image_size=16, digit_size=8, num_train=40,
                                       num_test=8), tmp_path, K=7, k=3)
    assert model.ema_model is not None


def test_joint_autoencoder_resumes_exactly_mid_epoch(qm9_root, tmp_path):
    from test_adit_crystals import structures, write_csv

    from dit3d.data import JointDataModule
    from dit3d.models import ADiTAutoencoderModule

    train = write_csv(tmp_path / "train.csv", structures())
    crystals = {"train_files": [str(train)], "root": str(tmp_path / "cache"), "progress": False}
    # the crystal path of stage 1: random periodic translations and the lattice/fractional heads
    assert_resumes_exactly(
        lambda: ADiTAutoencoderModule(hidden_size=32, depth=1, num_heads=4, latent_dim=4, lr=3e-3, warmup_steps=4),
        lambda: JointDataModule(qm9={"train_subset": 24, "val_subset": 8}, crystals=crystals, batch_size=8,
                                crystal_fraction=0.25, seed=3),
        tmp_path)


def test_joint_latent_dit_resumes_exactly_mid_epoch(qm9_root, tmp_path):
    from test_adit_crystals import structures, write_csv

    from dit3d.data import JointDataModule
    from dit3d.models import ADiTLatentModule
    from dit3d.tokenizers import AtomAutoencoder

    torch.manual_seed(0)
    ae = AtomAutoencoder(hidden_size=32, depth=1, num_heads=4, latent_dim=4)
    ae.save_pretrained(tmp_path / "ae")
    train = write_csv(tmp_path / "train.csv", structures())
    crystals = {"train_files": [str(train)], "root": str(tmp_path / "cache"), "progress": False}
    # 8 crystals, 2 per batch, with 6 of 24 molecules: 4 batches an epoch; cut at 3, resume to 6 (epoch 1).
    # Space-group conditioning draws label dropouts too; latent statistics come from the first run's
    # on_fit_start and travel in the checkpoint.
    assert_resumes_exactly(
        lambda: ADiTLatentModule(str(tmp_path / "ae"), preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4,
                                 lr=2e-3, warmup_steps=3, stats_batches=2, max_atoms=32, ema_decay=0.9,
                                 spacegroup_conditioning=True),
        lambda: JointDataModule(qm9={"train_subset": 24, "val_subset": 8}, crystals=crystals, batch_size=8,
                                crystal_fraction=0.25, seed=3),
        tmp_path)


# ----------------------------------------------------------------------------- SIGKILL

KILL_SCRIPT = """
import sys, time, torch
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from dit3d.data import DigitsDataModule
from dit3d.models import ImageDiTModule

root, max_steps, ckpt, slow_after = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])

class Log(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        with open(root + "/losses.txt", "a") as f:
            f.write(f"{trainer.global_step} {float(outputs['loss']).hex()}\\n")
        if slow_after and trainer.global_step >= slow_after:
            time.sleep(60)  # wait to be killed

seed_everything(0)
model = ImageDiTModule(preset="DiT-Img-Mini/4", image_size=16, in_channels=1, depth=1, hidden_size=48, num_heads=4,
                       lr=2e-3, warmup_steps=3, ema_decay=0.9)
trainer = Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                  enable_model_summary=False, limit_val_batches=0, limit_train_batches=3, deterministic=True,
                  callbacks=[Log(), ModelCheckpoint(dirpath=root + "/ckpt", every_n_train_steps=2, save_last=True)])
trainer.fit(model, datamodule=DigitsDataModule(batch_size=16, image_size=16), ckpt_path=None if ckpt == "-" else ckpt)
torch.save(model.state_dict(), root + "/final.pt")
"""


def _losses(path):
    out = {}
    for line in path.read_text().splitlines():
        step, loss = line.split()
        out[int(step)] = float.fromhex(loss)  # a resumed run overwrites the steps it repeats
    return out


def test_sigkilled_fit_resumes_exactly(tmp_path):
    """A real process killed with SIGKILL mid-epoch, resumed from last.ckpt in a new process."""
    pytest.importorskip("sklearn")
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full, cut = tmp_path / "full", tmp_path / "cut"
    full.mkdir(), cut.mkdir()
    subprocess.run([sys.executable, str(script), str(full), "7", "-", "0"], check=True, env=env, timeout=300)
    proc = subprocess.Popen([sys.executable, str(script), str(cut), "7", "-", "5"], env=env)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:  # killed after step 5 is logged; last.ckpt is from step 4 (mid-epoch 1)
            if (cut / "losses.txt").exists() and len((cut / "losses.txt").read_text().splitlines()) >= 5:
                break
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not (cut / "final.pt").exists()
    last = cut / "ckpt" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 4
    subprocess.run([sys.executable, str(script), str(cut), "7", str(last), "0"], check=True, env=env, timeout=300)
    a, b = _losses(full / "losses.txt"), _losses(cut / "losses.txt")
    assert sorted(b) == list(range(1, 8))
    torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
    wa, wb = torch.load(full / "final.pt"), torch.load(cut / "final.pt")
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-6, atol=1e-7, msg=name)
