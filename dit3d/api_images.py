"""Image generator: a trained class-conditional image DiT with its DDPM schedule and class names.

:class:`ImageGenerator` holds the EMA network, the diffusion schedule, the class names and
default sampling options, samples images (guided DDIM by default) and saves them as a
PNG grid. :func:`load_image_dit_checkpoint` rebuilds a trained
:class:`~dit3d.models.ImageDiTModule` from a Lightning ``.ckpt`` without unpickling code.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dit3d.api_ddpm import SAMPLING_OPTIONS  # noqa: F401 (still importable from here)
from dit3d.api_ddpm import DDPMGenerator, load_lightning_checkpoint
from dit3d.checks import positive_int
from dit3d.models.image_dit import ImageDiT
from dit3d.models.image_dit_sampling import sample_images

__all__ = ["DEFAULT_SAMPLING", "ImageGenerator", "image_grid", "load_image_dit_checkpoint", "write_png"]

#: guidance 4 is DiT's setting for its sample grids; DDIM on 50 steps
DEFAULT_SAMPLING: dict[str, Any] = {"sampler": "ddim", "steps": 50, "guidance": 4.0, "eta": 0.0, "batch_size": 64}


def load_image_dit_checkpoint(path: str | os.PathLike) -> Any:
    """Rebuild a trained :class:`~dit3d.models.ImageDiTModule` (eval mode) from a Lightning
    ``.ckpt`` written by ``dit3d fit``, reading it with ``torch.load(weights_only=True)``."""
    from dit3d.models.image_dit_module import ImageDiTModule

    return load_lightning_checkpoint(path, ImageDiTModule)[0]


def image_grid(images: Tensor | np.ndarray, per_row: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile images in ``[-1, 1]`` into one ``uint8`` picture (pixel ``round(127.5 (x + 1))``),
    ``pad`` pixels of black between tiles, ``per_row`` tiles a row (default ``ceil(sqrt(n))``).

    Shapes:
        images: ``(n, C, H, W)`` with ``C`` 1 or 3 -> ``(rows (H + pad) + pad, per_row (W + pad) + pad, C)``

    Example:
        >>> image_grid(torch.ones(3, 1, 4, 4), per_row=2).shape
        (11, 11, 1)
    """
    x = images.detach().float().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or len(x) == 0:
        raise ValueError(f"images must be (n >= 1, C in (1, 3), H, W), got {x.shape}")
    n, C, H, W = x.shape
    per_row = per_row or math.ceil(math.sqrt(n))
    rows = math.ceil(n / per_row)
    grid = np.zeros((rows * (H + pad) + pad, per_row * (W + pad) + pad, C), dtype=np.uint8)
    pixels = np.round((np.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)  # (n, H, W, C)
    for i in range(n):
        r, c = divmod(i, per_row)
        grid[pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = pixels[i]
    return grid


def write_png(path: str | os.PathLike, images: Tensor | np.ndarray, per_row: int | None = None, pad: int = 1,
              scale: int = 1) -> Path:
    """Save :func:`image_grid` as a PNG, each pixel repeated ``scale`` times per axis (Pillow)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with RDKit and matplotlib
        raise ImportError("writing PNG grids needs Pillow: pip install pillow") from None
    grid = image_grid(images, per_row, pad)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return path


class ImageGenerator(DDPMGenerator):
    """Class-conditional image sampler: guided DDIM (default) or ancestral DDPM with a
    trained :class:`~dit3d.models.image_dit.ImageDiT`; images in ``[-1, 1]``. Pretrained
    folders store the network arguments (``"image_dit"``), the schedule, the class names
    and the sampling defaults.

    Args:
        net: the noise predictor (the EMA copy of a trained module).
        diffusion: :class:`~dit3d.objectives.GaussianDiffusion` arguments it was trained with.
        class_names: names in label order (default ``"0"``, ``"1"``, ...).
        sampling: defaults for ``sampler``, ``steps``, ``guidance``, ``eta``, ``batch_size``
            (over :data:`DEFAULT_SAMPLING`).
        guide: a weaker network for autoguidance (:meth:`~dit3d.api_ddpm.DDPMGenerator.set_guide`), or None.

    Example:
        >>> gen = ImageGenerator.from_lightning(load_image_dit_checkpoint("last.ckpt"))  # doctest: +SKIP
        >>> gen.sample(16, label=[0, 1, 2, 3] * 4, seed=0).shape  # doctest: +SKIP
        torch.Size([16, 1, 16, 16])
    """

    KIND = "dit-images"
    NET_KEY, NET_CLASS, NET_NAME = "image_dit", ImageDiT, "image DiT"
    CONFIG_KEYS = ("class_names",)

    def __init__(self, net: ImageDiT, diffusion: Mapping[str, Any], class_names: Sequence[str] | None = None,
                 sampling: Mapping[str, Any] | None = None, guide: ImageDiT | DDPMGenerator | None = None) -> None:
        super().__init__(net, diffusion, guide)
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for a network with {self.num_classes} classes; "
                             "pass one name per class")
        self.class_names = [str(n) for n in names]
        defaults = dict(DEFAULT_SAMPLING, guidance=1.0) if self.num_classes == 0 else DEFAULT_SAMPLING  # no guidance
        self.sampling = self._checked_defaults(sampling, defaults)

    @classmethod
    def from_lightning(cls, module: Any, class_names: Sequence[str] | None = None,
                       sampling: Mapping[str, Any] | None = None) -> ImageGenerator:
        """From a trained :class:`~dit3d.models.ImageDiTModule` (its EMA network, shared, not copied)."""
        if not hasattr(module, "sampling_model") or not hasattr(module, "diffusion_config"):
            raise TypeError(f"from_lightning expects an ImageDiTModule, got {type(module).__name__}")
        return cls(module.sampling_model, module.diffusion_config, class_names, sampling)

    def _config_fields(self) -> dict[str, Any]:
        """Class names for ``config.json``."""
        return {"class_names": self.class_names}

    @classmethod
    def _from_config(cls, net: ImageDiT, config: dict[str, Any], guide: ImageDiT | None) -> ImageGenerator:
        """Rebuild from a pretrained folder's network, ``config.json`` and guide."""
        return cls(net, config["diffusion"], config["class_names"], config["sampling"], guide)

    def label_of(self, label: str | int) -> int:
        """Label index of a class name or index."""
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and 0 <= label < self.num_classes:
            return int(label)
        if isinstance(label, str) and label in self.class_names:
            return self.class_names.index(label)
        raise ValueError(f"unknown class {label!r}; this model knows {self.class_names}")

    @torch.no_grad()
    def sample(self, n: int, label: str | int | Sequence[str | int] = 0, seed: int | None = None,
               progress: bool = False, **options: Any) -> Tensor:
        """``n`` images in ``[-1, 1]`` of class ``label`` (one for all, or one per image;
        ignored by an unconditional model).

        The same ``seed`` and options give identical images on the CPU; ``None`` draws a
        fresh seed. Torch's global random state is never touched.

        Args:
            n: number of images.
            label: class name or index, or a sequence of ``n`` of them.
            seed: seeds the initial noise and every sampling step.
            progress: a progress bar per batch.
            **options: override the stored ``sampler``, ``steps``, ``guidance``, ``eta``, ``batch_size``,
                ``cache_interval`` (reuse attention and MLP outputs between full steps; 1: none).

        Shapes:
            returns ``(n, C, H, W)`` float32 on the CPU
        """
        n = positive_int(n, "n")
        labels = [label] * n if isinstance(label, (str, int, np.integer)) else list(label)
        if len(labels) != n:
            raise ValueError(f"label must be one class or {n} classes, got {len(labels)}")
        if self.num_classes == 0:  # unconditional: labels are ignored
            y = torch.zeros(n, dtype=torch.long)
        else:
            y = torch.tensor([self.label_of(v) for v in labels], dtype=torch.long)
        opts = self._options(options)
        g = self._generator(seed)
        out = []
        for start in range(0, n, opts["batch_size"]):
            part = y[start:start + opts["batch_size"]]
            out.append(sample_images(self.net, self.diffusion, len(part), part, opts["sampler"], opts["steps"],
                                     float(opts["eta"]), float(opts["guidance"]), 1.0, g, progress,
                                     int(opts["cache_interval"]), **self._guide_options(opts)).float().cpu())
        return torch.cat(out)
