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

from dit3d.models.image_dit import ImageDiT
from dit3d.models.image_dit_sampling import SAMPLERS, sample_images
from dit3d.objectives import GaussianDiffusion
from dit3d.pretrained import PretrainedError, load_pretrained, load_state_strict, resolve_pretrained, save_pretrained

__all__ = ["DEFAULT_SAMPLING", "ImageGenerator", "image_grid", "load_image_dit_checkpoint", "write_png"]

SAMPLING_OPTIONS = ("sampler", "steps", "guidance", "eta", "batch_size")
#: guidance 4 is DiT's setting for its sample grids; DDIM on 50 steps
DEFAULT_SAMPLING: dict[str, Any] = {"sampler": "ddim", "steps": 50, "guidance": 4.0, "eta": 0.0, "batch_size": 64}


def load_image_dit_checkpoint(path: str | os.PathLike) -> Any:
    """Rebuild a trained :class:`~dit3d.models.ImageDiTModule` (eval mode) from a Lightning
    ``.ckpt`` written by ``dit3d fit``, reading it with ``torch.load(weights_only=True)``."""
    from dit3d.models.image_dit_module import ImageDiTModule

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated files, non-checkpoints, pickled code
        raise ValueError(f"{path}: cannot read it as a Lightning checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a Lightning checkpoint (no state_dict)")
    hp = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if not k.startswith("_")}
    try:
        module = ImageDiTModule(**hp)
        module.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise ValueError(f"{path}: not an ImageDiTModule checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200]})") from None
    return module.eval()


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


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class ImageGenerator:
    """Class-conditional image sampler: guided DDIM (default) or ancestral DDPM with a
    trained :class:`~dit3d.models.image_dit.ImageDiT`; images in ``[-1, 1]``.

    Args:
        net: the noise predictor (the EMA copy of a trained module).
        diffusion: :class:`~dit3d.objectives.GaussianDiffusion` arguments it was trained with.
        class_names: names in label order (default ``"0"``, ``"1"``, ...).
        sampling: defaults for ``sampler``, ``steps``, ``guidance``, ``eta``, ``batch_size``
            (over :data:`DEFAULT_SAMPLING`).

    Example:
        >>> gen = ImageGenerator.from_lightning(load_image_dit_checkpoint("last.ckpt"))  # doctest: +SKIP
        >>> gen.sample(16, label=[0, 1, 2, 3] * 4, seed=0).shape  # doctest: +SKIP
        torch.Size([16, 1, 16, 16])
    """

    KIND = "dit-images"

    def __init__(self, net: ImageDiT, diffusion: Mapping[str, Any], class_names: Sequence[str] | None = None,
                 sampling: Mapping[str, Any] | None = None) -> None:
        self.net = net
        self.diffusion_config = dict(diffusion)
        self.diffusion = GaussianDiffusion(**self.diffusion_config)
        self.num_classes = int(net.config.get("num_classes", 0))
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for a network with {self.num_classes} classes; "
                             "pass one name per class")
        self.class_names = [str(n) for n in names]
        defaults = dict(DEFAULT_SAMPLING, guidance=1.0) if self.num_classes == 0 else DEFAULT_SAMPLING  # no guidance
        self.sampling = self._options(dict(defaults, **(sampling or {})), check_only=True)

    @classmethod
    def from_lightning(cls, module: Any, class_names: Sequence[str] | None = None,
                       sampling: Mapping[str, Any] | None = None) -> ImageGenerator:
        """From a trained :class:`~dit3d.models.ImageDiTModule` (its EMA network, shared, not copied)."""
        if not hasattr(module, "sampling_model") or not hasattr(module, "diffusion_config"):
            raise TypeError(f"from_lightning expects an ImageDiTModule, got {type(module).__name__}")
        return cls(module.sampling_model, module.diffusion_config, class_names, sampling)

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike) -> ImageGenerator:
        """Load a folder written by :meth:`save_pretrained`."""
        directory = resolve_pretrained(path_or_name)
        config, weights = load_pretrained(directory, cls.KIND)
        missing = {"image_dit", "diffusion", "class_names", "sampling"} - set(config)
        if missing:
            raise PretrainedError(f"{directory}: config.json lacks {sorted(missing)}; re-export the model")
        try:
            net = ImageDiT(**config["image_dit"])
        except (TypeError, ValueError) as e:
            raise PretrainedError(f"{directory}: bad image DiT config ({e})") from None
        load_state_strict(net, {k[4:]: v for k, v in weights.items() if k.startswith("net.")}, str(directory))
        return cls(net.eval(), config["diffusion"], config["class_names"], config["sampling"])

    def save_pretrained(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Weights (safetensors) and config (JSON: network arguments, schedule, class names,
        sampling defaults), written atomically; ``extra`` is stored in the config too."""
        state = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        config = {"image_dit": self.net.config, "diffusion": self.diffusion_config, "class_names": self.class_names,
                  "sampling": self.sampling}
        clash = set(extra or {}) & (set(config) | {"kind"})
        if clash:
            raise ValueError(f"extra config keys {sorted(clash)} are reserved; choose other names")
        return save_pretrained(directory, self.KIND, config | (extra or {}), state)

    def to(self, device: str | torch.device) -> ImageGenerator:
        """Move the network to ``device`` (seeded noise is still drawn on the CPU)."""
        self.net.to(device)
        return self

    def _options(self, options: dict[str, Any], check_only: bool = False) -> dict[str, Any]:
        unknown = set(options) - set(SAMPLING_OPTIONS)
        if unknown:
            raise ValueError(f"unknown sampling options {sorted(unknown)}; choose from {SAMPLING_OPTIONS}")
        opts = options if check_only else {**self.sampling, **options}
        if opts["sampler"] not in SAMPLERS:
            raise ValueError(f"unknown sampler {opts['sampler']!r}; choose one of {SAMPLERS}")
        if not check_only and opts["sampler"] == "ddpm" and "steps" not in options:
            opts["steps"] = None  # DDPM runs all T steps
        if opts["steps"] is not None:
            _positive_int(opts["steps"], "steps")
        _positive_int(opts["batch_size"], "batch_size")
        for key in ("guidance", "eta"):
            v = opts[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{key} must be a finite float >= 0, got {v!r}")
        return dict(opts)

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
            **options: override the stored ``sampler``, ``steps``, ``guidance``, ``eta``, ``batch_size``.

        Shapes:
            returns ``(n, C, H, W)`` float32 on the CPU
        """
        n = _positive_int(n, "n")
        labels = [label] * n if isinstance(label, (str, int, np.integer)) else list(label)
        if len(labels) != n:
            raise ValueError(f"label must be one class or {n} classes, got {len(labels)}")
        if self.num_classes == 0:  # unconditional: labels are ignored
            y = torch.zeros(n, dtype=torch.long)
        else:
            y = torch.tensor([self.label_of(v) for v in labels], dtype=torch.long)
        opts = self._options(options)
        g = torch.Generator().manual_seed(int(seed) if seed is not None else torch.Generator().seed())
        out = []
        for start in range(0, n, opts["batch_size"]):
            part = y[start:start + opts["batch_size"]]
            out.append(sample_images(self.net, self.diffusion, len(part), part, opts["sampler"], opts["steps"],
                                     float(opts["eta"]), float(opts["guidance"]), 1.0, g, progress).float().cpu())
        return torch.cat(out)
