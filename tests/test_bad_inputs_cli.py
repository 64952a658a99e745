"""Bad-input sweep (issue 7), part 3 of 3: the ``dit3d`` command and pretrained folders.

Every ``dit3d sample|evaluate|export|convert`` subcommand gets missing, garbage, truncated
and NaN inputs and unusable output paths; it must exit with a one-line ``error:`` message
that names the offending path (no traceback) before any long computation, and write
nothing. ``from_pretrained`` of every generator (and the digit classifier) gets folders of
the wrong kind, truncated or garbage safetensors and configs that do not match the
weights; it must raise :class:`~dit3d.pretrained.PretrainedError` naming the folder.
Overview and counts in ``tests/test_bad_inputs.py``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bad_inputs import cli_error, expect_error, listing
from dit3d.cli import main
from dit3d.pretrained import PretrainedError

DATA = Path(__file__).resolve().parents[1] / "data"

def _inputs(tmp: Path) -> Path:
    """A folder of bad (and a few good) inputs; outputs go to ``tmp / 'out'``."""
    d = tmp / "in"
    d.mkdir()
    rng = np.random.default_rng(0)
    np.save(d / "clouds.npy", rng.random((2, 8, 3)).astype(np.float32))
    np.save(d / "nan.npy", np.full((2, 8, 3), np.nan))
    (d / "garbage.npy").write_bytes(bytes(range(256)) * 2)
    (d / "garbage.sdf").write_bytes(bytes(range(256)) * 2)
    (d / "garbage.cif").write_bytes(bytes(range(256)) * 2)
    (d / "garbage.ckpt").write_bytes(bytes(range(256)) * 2)
    (d / "a_file").write_text("x")
    head = (DATA / "dit3d_chair_cpu" / "config.json").read_text()
    (d / "half_header.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00" + (
        "{'descr': '<f4', 'fortran_order': False, 'shape': (999999999, 2048, 3), }".ljust(117) + "\n").encode())
    sdf = ("\n     RDKit          3D\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\n"
           "    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0\nM  END\n$$$$\n")
    (d / "cut.sdf").write_text(sdf + sdf[:40])  # the second record cut in its header
    (d / "ok.sdf").write_text(sdf)
    np.save(d / "images.npy", np.zeros((4, 1, 16, 16), np.float32))
    np.save(d / "images_labels.npy", np.zeros(4, np.int64))
    (d / "images_sampling.json").write_text("{not json")
    np.save(d / "nan_images.npy", np.full((4, 1, 16, 16), np.nan, np.float32))
    np.save(d / "nan_images_labels.npy", np.zeros(4, np.int64))
    grids = np.zeros((2, 1, 4, 4, 4), np.uint8)
    grids[1, 0, 1:3, 1:3, 1:3] = 1
    np.save(d / "grids.npy", grids)
    trunc = d / "trunc_ckpt"
    trunc.mkdir()
    (trunc / "config.json").write_text(head)
    (trunc / "model.safetensors").write_bytes((DATA / "dit3d_chair_cpu" / "model.safetensors").read_bytes()[:5000])
    (tmp / "out").mkdir()
    (tmp / "out" / "is_a_folder.npy").mkdir()
    return d


# (id, argv with IN/ and OUT/ for the two folders, strings the message must contain)
CLI_CASES = [
    ("evaluate-pointclouds-garbage", ["evaluate", "pointclouds", "IN/garbage.npy", "--reference", "IN/clouds.npy"],
     ["garbage.npy"]),
    ("evaluate-pointclouds-nan", ["evaluate", "pointclouds", "IN/nan.npy", "--reference", "IN/clouds.npy"],
     ["nan.npy", "NaN"]),
    ("evaluate-pointclouds-missing", ["evaluate", "pointclouds", "IN/none.npy", "--reference", "IN/clouds.npy"],
     ["none.npy", "does not exist"]),
    ("evaluate-pointclouds-huge-header", ["evaluate", "pointclouds", "IN/half_header.npy", "--reference",
                                         "IN/clouds.npy"], ["half_header.npy"]),
    ("evaluate-pointclouds-out-missing-folder", ["evaluate", "pointclouds", "IN/clouds.npy", "--reference",
                                                 "IN/clouds.npy", "--emd", "none", "--out", "OUT/no/r.json"],
     ["r.json", "does not exist"]),
    ("evaluate-pointclouds-out-is-a-folder", ["evaluate", "pointclouds", "IN/clouds.npy", "--reference",
                                              "IN/clouds.npy", "--emd", "none", "--out", "OUT/is_a_folder.npy"],
     ["is_a_folder.npy", "folder"]),
    ("evaluate-pointclouds-out-under-a-file", ["evaluate", "pointclouds", "IN/clouds.npy", "--reference",
                                               "IN/clouds.npy", "--emd", "none", "--out", "IN/a_file/r.json"],
     ["r.json"]),
    ("evaluate-molecules-garbage", ["evaluate", "molecules", "IN/garbage.sdf", "--train-smiles", "none"],
     ["garbage.sdf", "record 0"]),
    ("evaluate-molecules-missing", ["evaluate", "molecules", "IN/none.sdf", "--train-smiles", "none"],
     ["none.sdf", "does not exist"]),
    ("evaluate-molecules-truncated", ["evaluate", "molecules", "IN/cut.sdf", "--train-smiles", "none"],
     ["cut.sdf", "record 1"]),
    ("evaluate-molecules-smiles-missing", ["evaluate", "molecules", "IN/ok.sdf", "--train-smiles", "IN/none.txt"],
     ["none.txt"]),
    ("evaluate-molecules-out-is-a-folder", ["evaluate", "molecules", "IN/ok.sdf", "--train-smiles", "none",
                                            "--out", "OUT/is_a_folder.npy"], ["is_a_folder.npy"]),
    ("evaluate-crystals-garbage", ["evaluate", "crystals", "IN/garbage.cif", "--reference", "IN/garbage.cif",
                                   "--no-cache"], ["garbage.cif"]),
    ("evaluate-crystals-missing", ["evaluate", "crystals", "IN/none.cif", "--reference", "IN/garbage.cif",
                                   "--no-cache"], ["none.cif", "does not exist"]),
    ("evaluate-crystals-bad-scaler", ["evaluate", "crystals", "IN/garbage.cif", "--reference", "IN/garbage.cif",
                                      "--comp-scaler", "IN/garbage.cif"], ["garbage.cif"]),
    ("evaluate-crystals-out-missing-folder", ["evaluate", "crystals", "IN/garbage.cif", "--reference",
                                              "IN/garbage.cif", "--out", "OUT/no/r.json"], ["r.json"]),
    ("evaluate-image-garbage", ["evaluate", "image", "IN/garbage.npy", "--labels", "IN/images_labels.npy"],
     ["garbage.npy"]),
    ("evaluate-image-missing", ["evaluate", "image", "IN/none.npy"], ["none.npy", "does not exist"]),
    ("evaluate-image-nan", ["evaluate", "image", "IN/nan_images.npy"], ["NaN"]),
    ("evaluate-image-bad-sampling-record", ["evaluate", "image", "IN/images.npy"], ["images_sampling.json"]),
    ("evaluate-image-huge-header", ["evaluate", "image", "IN/half_header.npy", "--labels", "IN/images_labels.npy"],
     ["half_header.npy"]),
    ("sample-pointclouds-missing-checkpoint", ["sample", "pointclouds", "--checkpoint", "IN/none", "-o",
                                               "OUT/s.npy"], ["none"]),
    ("sample-pointclouds-truncated-checkpoint", ["sample", "pointclouds", "--checkpoint", "IN/trunc_ckpt", "-o",
                                                 "OUT/s.npy"], ["trunc_ckpt", "model.safetensors"]),
    ("sample-pointclouds-wrong-kind", ["sample", "pointclouds", "--checkpoint", "adit-qm9-cpu", "-o", "OUT/s.npy"],
     ["adit-molecules"]),
    ("sample-pointclouds-out-missing-folder", ["sample", "pointclouds", "-o", "OUT/no/s.npy"], ["s.npy"]),
    ("sample-pointclouds-out-extension", ["sample", "pointclouds", "-o", "OUT/s.txt"], ["s.txt", ".npy"]),
    ("sample-pointclouds-out-is-a-folder", ["sample", "pointclouds", "-o", "OUT/is_a_folder.npy", "-n", "1",
                                            "--num-points", "8", "--steps", "2", "--no-progress"],
     ["is_a_folder.npy", "folder"]),
    ("sample-pointclouds-huge-n", ["sample", "pointclouds", "-n", "99999999999999", "--num-points", "99999999",
                                   "-o", "OUT/s.npy", "--no-progress"], ["error"]),
    ("sample-molecules-wrong-kind", ["sample", "molecules", "--checkpoint", "dit3d-chair-cpu", "-o", "OUT/m.sdf"],
     ["dit3d-pointclouds"]),
    ("sample-molecules-out-extension", ["sample", "molecules", "-o", "OUT/m.txt"], ["m.txt"]),
    ("sample-molecules-out-missing-folder", ["sample", "molecules", "-o", "OUT/no/m.sdf"], ["m.sdf"]),
    ("sample-molecules-huge-n", ["sample", "molecules", "-n", "99999999999999", "-o", "OUT/m.sdf"], ["error"]),
    ("sample-crystals-missing-checkpoint", ["sample", "crystals", "--checkpoint", "IN/none", "-o", "OUT/c.cif"],
     ["none"]),
    ("sample-image-missing-checkpoint", ["sample", "image", "--checkpoint", "IN/none", "-o", "OUT/i.png"], ["none"]),
    ("sample-image-out-extension", ["sample", "image", "-o", "OUT/i.txt"], ["i.txt"]),
    ("export-pointclouds-missing", ["export", "pointclouds", "IN/none.ckpt", "-o", "OUT/exp"], ["none.ckpt"]),
    ("export-pointclouds-garbage", ["export", "pointclouds", "IN/garbage.ckpt", "-o", "OUT/exp"], ["garbage.ckpt"]),
    ("export-image-garbage", ["export", "image", "IN/garbage.ckpt", "-o", "OUT/exp"], ["garbage.ckpt"]),
    ("export-molecules-missing", ["export", "molecules", "IN/none.ckpt", "-o", "OUT/exp"], ["none.ckpt"]),
    ("export-molecules-garbage", ["export", "molecules", "IN/garbage.ckpt", "-o", "OUT/exp"], ["garbage.ckpt"]),
    ("export-crystals-garbage", ["export", "crystals", "IN/garbage.ckpt", "-o", "OUT/exp"], ["garbage.ckpt"]),
    ("convert-shapes-garbage", ["convert", "shapes", "IN/garbage.npy", "-o", "OUT/pc", "--no-progress"],
     ["garbage.npy"]),
    ("convert-shapes-missing", ["convert", "shapes", "IN/none.npy", "-o", "OUT/pc", "--no-progress"],
     ["none.npy", "does not exist"]),
    ("convert-shapes-root-under-a-file", ["convert", "shapes", "IN/grids.npy", "-o", "IN/a_file/pc",
                                          "--no-progress"], ["a_file", "is a file"]),
    ("convert-shapes-clouds-not-grids", ["convert", "shapes", "IN/clouds.npy", "-o", "OUT/pc", "--no-progress"],
     ["clouds.npy", "(2, 8, 3)"]),
]


def _case(c):
    return c if hasattr(c, "marks") else pytest.param(*c, id=c[0])


@pytest.mark.parametrize("name, argv, where", [_case(c) for c in CLI_CASES])
def test_cli_exits_with_a_message(tmp_path, name, argv, where):
    inputs = _inputs(tmp_path)
    argv = [a.replace("IN/", f"{inputs}/").replace("OUT/", f"{tmp_path / 'out'}/") for a in argv]
    cli_error(main, argv, *where, folder=tmp_path)


ARGPARSE_CASES = [
    ("n-zero", ["sample", "pointclouds", "-n", "0", "-o", "s.npy"]),
    ("n-not-a-number", ["sample", "molecules", "-n", "many", "-o", "m.sdf"]),
    ("unknown-domain", ["sample", "proteins", "-o", "p.pdb"]),
    ("split-not-numbers", ["convert", "shapes", "g.npy", "-o", "pc", "--split", "a", "b", "c"]),
    ("bad-emd-choice", ["evaluate", "pointclouds", "s.npy", "--reference", "r.npy", "--emd", "magic"]),
]


@pytest.mark.parametrize("argv", [c[1] for c in ARGPARSE_CASES], ids=[c[0] for c in ARGPARSE_CASES])
def test_cli_usage_errors(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and "error:" in capsys.readouterr().err
    assert listing(tmp_path) == {}


# ============================================================================ pretrained folders
def _generator(kind: str):
    if kind == "shapes":
        from dit3d.api_shapes import ShapeGenerator

        return ShapeGenerator.from_pretrained
    if kind == "images":
        from dit3d.api_images import ImageGenerator

        return ImageGenerator.from_pretrained
    if kind == "molecules":
        from dit3d.api import MoleculeGenerator

        return MoleculeGenerator.from_pretrained
    from dit3d.metrics.images import load_digit_classifier

    return load_digit_classifier


FOLDERS = {"shapes": "dit3d_chair_cpu", "images": "digits_dit_cpu", "molecules": "adit_qm9_cpu",
           "classifier": "digits_classifier"}
NET_KEY = {"shapes": "dit3d", "images": "image_dit", "molecules": "autoencoder", "classifier": "classifier"}
BIGGER = {"shapes": ("patch_size", 2), "images": ("patch_size", 2), "molecules": ("hidden_size", 256),
          "classifier": ("feature_dim", 7)}


def _copy(kind: str, tmp: Path) -> Path:
    folder = tmp / "model"
    folder.mkdir()
    shutil.copy(DATA / FOLDERS[kind] / "config.json", folder / "config.json")
    (folder / "model.safetensors").symlink_to(DATA / FOLDERS[kind] / "model.safetensors")
    return folder


def _config(folder: Path, change) -> None:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def _weights(folder: Path, data: bytes) -> None:
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").write_bytes(data)


def _other_weights(kind: str, folder: Path) -> None:
    other = "images" if kind != "images" else "shapes"
    _weights(folder, (DATA / FOLDERS[other] / "model.safetensors").read_bytes())


# (id, mutate(kind, folder), strings the message must contain, kinds that once needed a fix elsewhere)
PRETRAINED_CASES = [
    ("wrong-kind", lambda k, f: _config(f, lambda c: c.update(kind="something-else")), ["something-else"], {}),
    ("truncated-weights", lambda k, f: _weights(f, (f / "model.safetensors").read_bytes()[:1000]),
     ["model.safetensors"], {}),
    ("truncated-weights-half", lambda k, f: _weights(f, (f / "model.safetensors").read_bytes()[:50_000]),
     ["model.safetensors"], {}),
    ("empty-weights", lambda k, f: _weights(f, b""), ["model.safetensors"], {}),
    ("garbage-weights", lambda k, f: _weights(f, bytes(range(256)) * 8), ["model.safetensors"], {}),
    ("huge-header-length", lambda k, f: _weights(f, b"\xff" * 8 + b"{}"), ["model.safetensors"], {}),
    ("bad-tensor-header", lambda k, f: _weights(f, b"\x10\x00\x00\x00\x00\x00\x00\x00" + b'{"a": 1}        '),
     ["model.safetensors"], {}),
    ("missing-weights", lambda k, f: (f / "model.safetensors").unlink(), ["missing model.safetensors"], {}),
    ("missing-config", lambda k, f: (f / "config.json").unlink(), ["missing config.json"], {}),
    ("config-not-json", lambda k, f: (f / "config.json").write_text("{not json"), ["config.json"], {}),
    ("config-not-utf8", lambda k, f: (f / "config.json").write_bytes(b"\xff\xfe{}"), ["config.json"],
     {"shapes", "images", "molecules", "classifier"}),
    ("config-a-list", lambda k, f: (f / "config.json").write_text("[1, 2]"), ["config.json"],
     {"shapes", "images", "molecules", "classifier"}),
    ("config-only-kind", lambda k, f: _config(f, lambda c: [c.pop(key) for key in list(c) if key != "kind"]),
     ["model"], {"molecules"}),
    ("config-unknown-argument", lambda k, f: _config(f, lambda c: c[NET_KEY[k]].update(bogus=1)), ["bogus"],
     {"molecules"}),
    ("config-does-not-match-weights", lambda k, f: _config(f, lambda c: c[NET_KEY[k]].update([BIGGER[k]])),
     ["weights do not match"], {}),
    ("weights-of-another-model", _other_weights, ["weights do not match"], {}),
]


def _pretrained_params():
    for name, mutate, where, _ in PRETRAINED_CASES:
        for kind in FOLDERS:
            yield pytest.param(kind, mutate, where, id=f"{name}-{kind}")


@pytest.mark.parametrize("kind, mutate, where", list(_pretrained_params()))
def test_from_pretrained_rejects(tmp_path, kind, mutate, where):
    folder = _copy(kind, tmp_path)
    mutate(kind, folder)
    expect_error(lambda: _generator(kind)(folder), PretrainedError, "model", *where)


PATH_CASES = [
    ("missing-folder", lambda tmp: tmp / "nowhere", ["nowhere"]),
    ("lightning-ckpt-file", lambda tmp: (tmp / "last.ckpt").write_bytes(b"x") and tmp / "last.ckpt", ["last.ckpt"]),
    ("a-file", lambda tmp: (tmp / "model.txt").write_text("x") and tmp / "model.txt", ["model.txt"]),
    ("empty-folder", lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", ["empty", "missing"]),
    ("other-domain", lambda tmp: DATA / "dit3d_chair_cpu", ["dit3d-pointclouds"]),
]


@pytest.mark.parametrize("build, where", [c[1:] for c in PATH_CASES], ids=[c[0] for c in PATH_CASES])
@pytest.mark.parametrize("kind", ["images", "molecules"])
def test_from_pretrained_rejects_paths(tmp_path, kind, build, where):
    expect_error(lambda: _generator(kind)(build(tmp_path)), PretrainedError, *where)


def test_molecule_generator_rejects_weights_without_latent_statistics(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _copy("molecules", tmp_path)
    weights = load_file(str(DATA / FOLDERS["molecules"] / "model.safetensors"))
    del weights["latent_mean"]
    (folder / "model.safetensors").unlink()
    save_file(weights, str(folder / "model.safetensors"))
    expect_error(lambda: _generator("molecules")(folder), PretrainedError, "model", "latent_mean")
