"""Same seed, same samples: the ``dit3d sample`` command, run in a fresh process, writes
byte-for-byte what the Python API writes in this one, for every domain; another seed
differs. (Images: tests/test_cli_images.py compares the command and the API in-process.)

The models are tiny and random (sampling quality is irrelevant here, the code path is the
real one), saved as pretrained folders the command loads like any user's.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dit3d.api import CrystalGenerator, MoleculeGenerator, ShapeGenerator
from dit3d.chem.crystals import write_extxyz
from dit3d.chem.io import write_xyz
from dit3d.models import ADiTLatentModule, DiT3DModule
from dit3d.testing import randomize_
from dit3d.tokenizers import CRYSTAL, MOLECULE, AtomAutoencoder


def run_cli(*args: str) -> None:
    """``dit3d ...`` in a fresh interpreter with this process's thread count."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run([sys.executable, "-m", "dit3d.cli", *args], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def adit_dir(tmp_path_factory):
    """A joint (molecule + crystal) ADiT folder with random weights."""
    torch.manual_seed(0)
    ae = randomize_(AtomAutoencoder(hidden_size=32, depth=1, num_heads=4, latent_dim=4), std=0.1)
    module = ADiTLatentModule(ae.config, preset="DiT-Mini", depth=1, hidden_size=48, num_heads=4, max_atoms=12)
    module.autoencoder.load_state_dict(ae.state_dict())
    randomize_(module.sampling_dit, std=0.1)
    module.atom_count_hist[MOLECULE, 6:10] = 1.0
    module.atom_count_hist[CRYSTAL, 2:5] = 1.0
    path = tmp_path_factory.mktemp("adit") / "joint"
    MoleculeGenerator.from_lightning(module.eval(), {"steps": 3, "solver": "heun"}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def shape_dir(tmp_path_factory):
    torch.manual_seed(0)
    module = DiT3DModule("DiT-3D-Mini/4", resolution=8, depth=1, num_timesteps=20, num_classes=1)
    randomize_(module.sampling_model, std=0.05)
    stats = {"normalization": "global", "mean": [0.1, -0.2, 0.3], "std": 0.5}
    path = tmp_path_factory.mktemp("shapes") / "gen"
    ShapeGenerator.from_lightning(module.eval(), stats, {"sampler": "ddim", "steps": 3, "eta": 1.0}).save_pretrained(path)
    return path


def test_molecules_cli_equals_api(adit_dir, tmp_path):
    run_cli("sample", "molecules", "--checkpoint", str(adit_dir), "-n", "5", "--seed", "11", "-o",
            str(tmp_path / "cli.xyz"))
    gen = MoleculeGenerator.from_pretrained(adit_dir)
    write_xyz(tmp_path / "api.xyz", gen.sample_arrays(5, seed=11))
    write_xyz(tmp_path / "other.xyz", gen.sample_arrays(5, seed=12))
    api = (tmp_path / "api.xyz").read_bytes()
    assert (tmp_path / "cli.xyz").read_bytes() == api
    assert (tmp_path / "other.xyz").read_bytes() != api


def test_crystals_cli_equals_api(adit_dir, tmp_path):
    run_cli("sample", "crystals", "--checkpoint", str(adit_dir), "-n", "5", "--seed", "11", "-o",
            str(tmp_path / "cli.extxyz"))
    gen = CrystalGenerator.from_pretrained(adit_dir)
    write_extxyz(tmp_path / "api.extxyz", gen.sample_set(5, seed=11).structures)
    assert (tmp_path / "cli.extxyz").read_bytes() == (tmp_path / "api.extxyz").read_bytes()


def test_pointclouds_cli_equals_api(shape_dir, tmp_path):
    run_cli("sample", "pointclouds", "--checkpoint", str(shape_dir), "-n", "3", "--num-points", "64", "--seed", "4",
            "--no-progress", "-o", str(tmp_path / "cli.npy"))
    gen = ShapeGenerator.from_pretrained(shape_dir)
    api = gen.sample_arrays(3, 64, seed=4)
    cli = np.load(tmp_path / "cli.npy")
    assert cli.dtype == np.float32 and np.array_equal(cli, np.asarray(api, dtype=np.float32))
    assert not np.array_equal(cli, np.asarray(gen.sample_arrays(3, 64, seed=5), dtype=np.float32))
