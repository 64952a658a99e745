"""The dit3d command: LightningCLI wiring runs a real (tiny) fit from a config file."""
import os
import subprocess
import sys
import textwrap

import torch

from dit3d.cli import main

TOY = textwrap.dedent('''
    import torch
    from lightning.pytorch import LightningDataModule, LightningModule
    from torch.utils.data import DataLoader, TensorDataset

    from dit3d.nn import DiTTrunk


    class ToyModule(LightningModule):
        def __init__(self, hidden_size: int = 24, depth: int = 1):
            super().__init__()
            self.trunk = DiTTrunk(depth, hidden_size, 4, out_dim=hidden_size)

        def training_step(self, batch, batch_idx):
            (x,) = batch
            y = self.trunk(x, torch.ones(x.shape[0], x.shape[-1]))
            loss = (y - x).square().mean()
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-2)


    class ToyData(LightningDataModule):
        def __init__(self, hidden_size: int = 24):
            super().__init__()
            self.x = torch.randn(16, 5, hidden_size, generator=torch.Generator().manual_seed(0))

        def train_dataloader(self):
            return DataLoader(TensorDataset(self.x), batch_size=4)
''')

CONFIG = textwrap.dedent('''
    seed_everything: 0
    trainer:
      max_steps: 3
      accelerator: cpu
      logger: false
      enable_progress_bar: false
      default_root_dir: {root}
    model:
      class_path: toy_system.ToyModule
      init_args:
        depth: 2
    data:
      class_path: toy_system.ToyData
''')


def test_presets_command(capsys):
    main(["presets"])
    out = capsys.readouterr().out
    assert "DiT-S" in out and "width=384" in out


def test_fit_from_config(tmp_path):
    (tmp_path / "toy_system.py").write_text(TOY)
    config = tmp_path / "toy.yaml"
    config.write_text(CONFIG.format(root=tmp_path))
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run([sys.executable, "-m", "dit3d.cli", "fit", "-c", str(config)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpts = list((tmp_path / "checkpoints").glob("*.ckpt"))
    assert len(ckpts) == 1, proc.stderr[-3000:]
    state = torch.load(ckpts[0], map_location="cpu", weights_only=False)
    assert state["global_step"] == 3
    assert len([k for k in state["state_dict"] if k.startswith("trunk.blocks.")]) > 0
    assert (tmp_path / "config.yaml").exists()  # LightningCLI saved the resolved config


def test_no_command_prints_help(capsys):
    try:
        main([])
    except SystemExit as e:
        assert e.code == 2
    assert "fit" in capsys.readouterr().out


def test_cli_solver_choices_match_the_objective():
    # the CLI spells the solvers out so that building its parser imports no torch
    from dit3d.cli.common import SOLVER_CHOICES
    from dit3d.objectives.flow_matching import SOLVERS

    assert SOLVER_CHOICES == SOLVERS


def test_building_the_parser_imports_no_torch():
    code = "import sys; from dit3d.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
