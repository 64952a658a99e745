"""Shared pytest fixtures."""
from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="session")
def qm9_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A QM9 cache built once per test session, under a temporary ``DIT3D_CACHE``.

    Parsing all of QM9 takes a few seconds, so every QM9 test shares this one cache
    instead of building its own (and none writes to the user's real cache). Yields the
    dataset root, which is also what ``QM9()`` picks by default while the fixture lives.
    """
    cache = tmp_path_factory.mktemp("dit3d_cache")
    previous = os.environ.get("DIT3D_CACHE")
    os.environ["DIT3D_CACHE"] = str(cache)
    from dit3d.data import QM9

    QM9(split="val", subset=1)  # any split builds the cache of all splits
    yield str(cache / "qm9")
    shutil.rmtree(cache, ignore_errors=True)  # ~180 MB; pytest would keep it for 3 sessions
    if previous is None:
        os.environ.pop("DIT3D_CACHE", None)
    else:
        os.environ["DIT3D_CACHE"] = previous


@pytest.fixture
def tiny_ddpm_module():
    """A factory ``(kind, **options) -> module`` of one-block DDPM Lightning modules,
    ``kind`` one of ``"dit3d"``, ``"image"``, ``"video"``; ``options`` go to the constructor."""
    from dit3d.models import DiT3DModule, ImageDiTModule, VideoDiTModule

    builders = {"dit3d": lambda **k: DiT3DModule("DiT-3D-Mini/8", resolution=16, depth=1, **k),
                "image": lambda **k: ImageDiTModule("DiT-Img-Mini/4", image_size=16, in_channels=1, depth=1, **k),
                "video": lambda **k: VideoDiTModule(patch_size=8, num_frames=4, image_size=16, depth=1, **k)}
    return lambda kind, **options: builders[kind](**options)
