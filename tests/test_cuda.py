"""The same code on a CUDA device: the trunk agrees with the CPU, every Lightning module
trains under ``accelerator="gpu"``, and every generator samples on the GPU what it samples
on the CPU (seeded noise is drawn on the CPU, so the two runs see the same noise).

Skipped without CUDA (CI has none); run on a GPU machine with ``pytest tests/test_cuda.py``.
TF32 is switched off so fp32 results are comparable with the CPU's.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, Trainer
from torch_geometric.data import Data

from dit3d.data.datamodule import AtomsDataModule
from dit3d.models import ADiTAutoencoderModule, ADiTLatentModule, DiT3DModule, ImageDiTModule, VideoDiTModule
from dit3d.nn import DiTTrunk
from dit3d.testing import randomize_

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def exact_fp32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class DeviceProbe(Callback):
    """Records, at every training step, where the parameters and the loss live and whether
    the loss is finite (Lightning moves a module back to the CPU when ``fit`` ends)."""

    def __init__(self) -> None:
        self.devices: set[str] = set()
        self.finite: list[bool] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.devices |= {p.device.type for p in pl_module.parameters()} | {loss.device.type}
        self.finite.append(bool(torch.isfinite(loss)))


def fit_on_gpu(module, datamodule, root, steps: int = 3) -> Trainer:
    probe = DeviceProbe()
    trainer = Trainer(accelerator="gpu", devices=1, max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=root, callbacks=[probe])
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == steps and probe.devices == {"cuda"} and all(probe.finite) and len(probe.finite) == steps
    return trainer


# ------------------------------------------------------------------- the trunk
@pytest.mark.parametrize("window", [None, (2, 2, 2)])
def test_trunk_forward_and_backward_match_the_cpu(window):
    trunk = randomize_(DiTTrunk(3, 48, 4, out_dim=5, window_size=window, window_blocks=(0, 2) if window else ()))
    x, c = torch.randn(2, 64, 48), torch.randn(2, 48)
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[1, 50:] = False
    outs, grads = [], []
    for device in ("cpu", "cuda"):
        trunk.to(device).zero_grad()
        kw = {"grid": (4, 4, 4)} if window else {"mask": mask.to(device)}
        y = trunk(x.to(device), c.to(device), **kw)  # (2, 64, 5)
        y.square().sum().backward()
        outs.append(y.cpu())
        grads.append(torch.cat([p.grad.flatten().cpu() for p in trunk.parameters()]))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-3)


# -------------------------------------------------------- training on the GPU
def test_image_and_video_modules_train_on_the_gpu(tmp_path):
    pytest.importorskip("sklearn")
    from dit3d.data import DigitsDataModule, MovingDigitsDataModule

    image = ImageDiTModule("DiT-Img-Mini/4", image_size=16, in_channels=1, depth=1, hidden_size=32, num_heads=4,
                           lr=2e-3, ema_decay=0.9)
    video = VideoDiTModule(patch_size=8, num_frames=4, image_size=16, depth=2, hidden_size=24, num_heads=4,
                           lr=3e-3, ema_decay=0.9, num_timesteps=100, num_classes=10)
    data = [DigitsDataModule(batch_size=8, image_size=16),
            MovingDigitsDataModule(batch_size=4, num_frames=4, image_size=16, digit_size=8, num_train=8, num_test=4)]
    for module, dm in zip((image, video), data):
        ema_before = [p.detach().clone() for p in module.ema_model.parameters()]
        fit_on_gpu(module, dm, tmp_path)
        assert any(not torch.equal(a, b.cpu()) for a, b in zip(ema_before, module.ema_model.parameters()))


def test_dit3d_module_trains_on_the_gpu(tmp_path):
    from dit3d.data.pointclouds import PointCloudDataModule

    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        (tmp_path / "03001627" / split).mkdir(parents=True)
        for i in range(n):
            np.save(tmp_path / "03001627" / split / f"s{i}.npy", rng.standard_normal((15000, 3)).astype(np.float32))
    dm = PointCloudDataModule(str(tmp_path), ["chair"], batch_size=2, num_points=64)
    module = DiT3DModule("DiT-3D-Mini/4", resolution=8, depth=2, num_timesteps=50, lr=1e-3, ema_decay=0.9,
                         window_size=(2, 2, 2), window_blocks=(0,))
    fit_on_gpu(module, dm, tmp_path)


def toy_molecule(n: int, generator: torch.Generator) -> Data:
    """A random 'molecule' in the shared atoms layout (crystal fields zero)."""
    types = torch.tensor([1, 6, 7, 8])[torch.randint(0, 4, (n,), generator=generator)]
    zeros = torch.zeros(1, 3)
    return Data(atom_types=types, pos=1.5 * torch.randn(n, 3, generator=generator), frac_coords=torch.zeros(n, 3),
                cell=torch.zeros(1, 3, 3), lengths=zeros, angles=zeros.clone(), dataset_idx=torch.zeros(1, dtype=torch.long),
                spacegroup=torch.zeros(1, dtype=torch.long), num_atoms=torch.tensor([n]))


class ToyMolecules(AtomsDataModule):
    """24 random molecules of 3-9 atoms, the same list for every split."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_size, self.num_workers, self.pin_memory, self.seed, self.group_by_size = 8, 0, False, 0, False
        g = torch.Generator().manual_seed(0)
        self.train_dataset = [toy_molecule(3 + i % 7, g) for i in range(24)]

    def _dataset(self, split: str) -> list[Data]:
        return self.train_dataset


def test_adit_stages_train_and_sample_on_the_gpu(tmp_path):
    from dit3d.models.adit_sampling import decode_atoms, sample_latents

    ae = ADiTAutoencoderModule(hidden_size=32, depth=1, num_heads=4, latent_dim=4, lr=3e-3, warmup_steps=1)
    trainer = fit_on_gpu(ae, ToyMolecules(), tmp_path)
    trainer.save_checkpoint(tmp_path / "ae.ckpt")
    # decoder fine-tuning: the stage-1 weights load on the GPU, only the decoder side moves
    tuned = ADiTAutoencoderModule(hidden_size=32, depth=1, num_heads=4, latent_dim=4, lr=3e-3, warmup_steps=1,
                                  init_from=str(tmp_path / "ae.ckpt"), freeze_encoder=True, latent_noise=0.2)
    fit_on_gpu(tuned, ToyMolecules(), tmp_path)
    assert tuned.autoencoder.same_encoder(ae.autoencoder, rtol=0)
    before, after = ae.autoencoder.decoder.state_dict(), tuned.autoencoder.decoder.state_dict()
    assert any(not torch.equal(after[k].cpu(), v.cpu()) for k, v in before.items())
    latent = ADiTLatentModule(str(tmp_path / "ae.ckpt"), preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4,
                              warmup_steps=1, stats_batches=2, max_atoms=16)
    fit_on_gpu(latent, ToyMolecules(), tmp_path)
    assert bool(latent.stats_ready)
    assert latent.atom_count_hist[0].sum() == 24

    counts = torch.tensor([3, 5, 9])
    results = []
    for device in ("cuda", "cpu"):
        dit, ae_net = latent.sampling_dit.to(device), latent.autoencoder.to(device)
        z, mask = sample_latents(dit, latent.flow, counts, latent.latent_mean, latent.latent_std, steps=4,
                                 solver="heun", guidance=2.0, generator=torch.Generator().manual_seed(0))
        types, pos = decode_atoms(ae_net, z, mask)
        assert z.device.type == device and torch.isfinite(pos).all()
        results.append((z.cpu(), types.cpu(), pos.cpu()))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-3, atol=1e-3)


# ------------------------------------------------------ generators on the GPU
def test_ddpm_generators_sample_on_the_gpu_what_they_sample_on_the_cpu():
    from dit3d.api_images import ImageGenerator
    from dit3d.api_shapes import ShapeGenerator
    from dit3d.api_video import VideoGenerator

    image = randomize_(ImageDiTModule("DiT-Img-Mini/4", image_size=16, in_channels=1, depth=1, hidden_size=32,
                                      num_heads=4, num_timesteps=20), std=0.05).eval()
    video = randomize_(VideoDiTModule(patch_size=8, num_frames=4, image_size=16, depth=1, hidden_size=24, num_heads=4,
                                      num_timesteps=20), std=0.05).eval()
    shape = randomize_(DiT3DModule("DiT-3D-Mini/4", resolution=8, depth=1, num_timesteps=20), std=0.05).eval()
    data = {"num_frames": 4, "image_size": 16, "digit_size": 8, "num_digits": 1, "speed": [1.0, 3.0],
            "test_fraction": 0.2, "seed": 0}
    cases = [(ImageGenerator.from_lightning(image, sampling={"steps": 4}), lambda g: g.sample(3, label=1, seed=0)),
             (VideoGenerator.from_lightning(video, data=data, sampling={"steps": 4}), lambda g: g.sample(2, seed=0)),
             (ShapeGenerator.from_lightning(shape, sampling={"steps": 4}),
              lambda g: torch.as_tensor(g.sample_arrays(2, 64, seed=0)))]
    for gen, draw in cases:
        cpu = draw(gen)
        cuda = draw(gen.to("cuda"))
        assert cuda.device.type == "cpu"  # results come back as CPU tensors / arrays
        torch.testing.assert_close(cuda, cpu, rtol=1e-3, atol=1e-3)
        gen.to("cpu")
