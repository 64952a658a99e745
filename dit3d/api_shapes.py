"""Point-cloud generator: a trained DiT-3D (Mo et al. 2023) with its DDPM schedule and data frame.

:class:`ShapeGenerator` holds the EMA network, the diffusion schedule, the training
data's normalisation and category names, and default sampling options; it samples
clouds in the data frame (as the references of :meth:`PointCloudDataModule.reference_clouds`).
:func:`load_dit3d_checkpoint` rebuilds a trained module and the normalisation from a
Lightning ``.ckpt`` without unpickling code. Re-exported by :mod:`dit3d.api`.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from dit3d.api_ddpm import SAMPLING_OPTIONS  # noqa: F401 (still importable from here)
from dit3d.api_ddpm import DDPMGenerator, load_lightning_checkpoint
from dit3d.checks import positive_int
from dit3d.models.dit3d_net import DiT3D
from dit3d.models.dit3d_sampling import sample_point_clouds

#: ``steps=None`` means the sampler's own default: 50 for DDIM, all ``T`` for DDPM. DDIM 100 at
#: eta 1 is what ``dit3d-chair-cpu`` measured within seed noise of 1000-step DDPM; 50 steps were
#: clearly worse, and deterministic DDIM (eta 0) diverged (``data/dit3d_chair_cpu/README.md``)
DEFAULT_SAMPLING: dict[str, Any] = {"sampler": "ddim", "steps": 100, "guidance": 1.0, "eta": 1.0, "batch_size": 64}


def load_dit3d_checkpoint(path: str | os.PathLike) -> tuple[Any, dict[str, Any] | None]:
    """Rebuild a trained :class:`~dit3d.models.DiT3DModule` and its data normalisation from a
    Lightning ``.ckpt``, without unpickling code (``torch.load(weights_only=True)``).

    :class:`~dit3d.data.PointCloudDataModule` saves ``{"normalization_stats": stats}``
    (its :meth:`state_dict`) under its class name in every checkpoint of a ``fit`` it
    took part in; those statistics are returned, with ``"categories"`` (names in label
    order) filled in from the data module's hyper-parameters when the statistics lack
    them (``"per-shape"``, ``"none"``). ``None`` when the run used another data source.

    Args:
        path: ``.ckpt`` written by ``dit3d fit`` (or ``Trainer.save_checkpoint``).

    Returns:
        ``(module in eval mode, stats or None)``
    """
    from dit3d.data.pc15k import resolve_category
    from dit3d.models.dit3d_module import DiT3DModule

    module, ckpt = load_lightning_checkpoint(path, DiT3DModule)
    stats = None
    for value in ckpt.values():
        if isinstance(value, dict) and isinstance(value.get("normalization_stats"), dict):
            stats = dict(value["normalization_stats"])
    data_hp = ckpt.get("datamodule_hyper_parameters") or {}
    if stats is not None and "categories" not in stats and data_hp.get("categories"):
        cats = data_hp["categories"]
        stats["categories"] = [resolve_category(c)[0] for c in ([cats] if isinstance(cats, str) else cats)]
    return module, stats


def _check_normalization(stats: Mapping[str, Any] | None) -> dict[str, Any]:
    """JSON-ready copy of data-module statistics; ``None`` means no normalisation."""
    if stats is None:
        return {"normalization": "none"}
    if not isinstance(stats, Mapping):
        raise TypeError(f"normalization_stats must be a dict like PointCloudDataModule.stats, "
                        f"got {type(stats).__name__}")
    kind = stats.get("normalization")
    out = dict(stats)
    if kind == "global":
        mean, std = np.asarray(stats.get("mean", ()), dtype=np.float64), stats.get("std")
        good_std = isinstance(std, (int, float, np.floating)) and not isinstance(std, bool) and (
            math.isfinite(std) and std > 0)
        if mean.shape != (3,) or not np.isfinite(mean).all() or not good_std:
            raise ValueError(f"global normalisation needs 'mean' (3 finite floats) and 'std' (float > 0), got "
                             f"mean={stats.get('mean')!r}, std={std!r}")
        out["mean"], out["std"] = [float(m) for m in mean], float(std)
    elif kind not in ("none", "per-shape"):
        raise ValueError(f"unknown normalization {kind!r} in the statistics; expected 'global', 'per-shape' or 'none'")
    if "categories" in out:
        out["categories"] = [str(c) for c in out["categories"]]
    return out


class ShapeGenerator(DDPMGenerator):
    """DiT-3D point-cloud sampler: DDIM (default) or ancestral DDPM, optional guidance,
    samples mapped back to the data frame with the training normalisation.

    ``"global"`` statistics are undone (``x * std + mean``); ``"per-shape"`` has no single
    frame to return to, so those samples stay zero-mean, unit-std clouds; ``"none"`` is
    the identity. Pretrained folders store the DiT-3D arguments (``"dit3d"``), the schedule,
    the normalisation, the category names and the sampling defaults.

    Args:
        net: the noise predictor (the EMA copy of a trained module).
        diffusion: :class:`~dit3d.objectives.GaussianDiffusion` arguments it was trained with.
        normalization: the data module's :attr:`~dit3d.data.PointCloudDataModule.stats`, or None.
        categories: names in label order (default: ``normalization["categories"]``).
        sampling: defaults for :data:`SAMPLING_OPTIONS` (over :data:`DEFAULT_SAMPLING`).
        guide: a weaker network for autoguidance (:meth:`~dit3d.api_ddpm.DDPMGenerator.set_guide`), or None.

    Example:
        >>> gen = ShapeGenerator.from_pretrained("dit3d-chair-cpu")  # doctest: +SKIP
        >>> gen.sample_arrays(4, category="chair", seed=0).shape  # doctest: +SKIP
        (4, 2048, 3)
    """

    KIND = "dit3d-pointclouds"
    NET_KEY, NET_CLASS, NET_NAME = "dit3d", DiT3D, "DiT-3D"
    CONFIG_KEYS = ("normalization",)  # "categories" may be absent: then the normalisation's are used

    def __init__(self, net: DiT3D, diffusion: Mapping[str, Any], normalization: Mapping[str, Any] | None = None,
                 categories: list[str] | None = None, sampling: Mapping[str, Any] | None = None,
                 guide: DiT3D | DDPMGenerator | None = None) -> None:
        super().__init__(net, diffusion, guide)
        self.normalization = _check_normalization(normalization)
        names = categories if categories is not None else self.normalization.get("categories")
        self.categories = [str(c) for c in names] if names is not None else None
        if self.categories is not None and self.num_classes > 0 and len(self.categories) != self.num_classes:
            raise ValueError(f"{len(self.categories)} category names {self.categories} for a network with "
                             f"{self.num_classes} classes; pass categories= with one name per class")
        self.sampling = self._checked_defaults(sampling, DEFAULT_SAMPLING)

    # --------------------------------------------------------------- loading
    @classmethod
    def from_lightning(cls, module: Any, normalization_stats: Mapping[str, Any] | None = None,
                       sampling: Mapping[str, Any] | None = None,
                       categories: list[str] | None = None) -> ShapeGenerator:
        """From a trained :class:`~dit3d.models.DiT3DModule` (its EMA network, shared, not copied)
        and the data module's :attr:`~dit3d.data.PointCloudDataModule.stats`
        (or the second value of :func:`load_dit3d_checkpoint`)."""
        hp = getattr(module, "hparams", {})
        if not hasattr(module, "sampling_model") or "num_timesteps" not in hp:
            raise TypeError(f"from_lightning expects a DiT3DModule, got {type(module).__name__}")
        return cls(module.sampling_model, module.diffusion_config, normalization_stats, categories, sampling)

    def _config_fields(self) -> dict[str, Any]:
        """Normalisation and category names for ``config.json``."""
        return {"normalization": self.normalization, "categories": self.categories}

    @classmethod
    def _from_config(cls, net: DiT3D, config: dict[str, Any], guide: DiT3D | None) -> ShapeGenerator:
        """Rebuild from a pretrained folder's network, ``config.json`` and guide."""
        return cls(net, config["diffusion"], config["normalization"], config.get("categories"), config["sampling"],
                   guide)

    # -------------------------------------------------------------- sampling
    def label_of(self, category: str | int | None) -> int:
        """Label index of ``category`` (name, synset id, or index); None for a one-category model."""
        names = self.categories or [str(i) for i in range(self.num_classes)]
        known = ", ".join(f"{i}: {n}" for i, n in enumerate(names)) or "none"
        if self.num_classes == 0:
            if category is not None:
                raise ValueError(f"this model is unconditional; leave category=None (got {category!r})")
            return 0
        if category is None:
            if self.num_classes == 1:
                return 0
            raise ValueError(f"this model knows {self.num_classes} categories ({known}); pass category=NAME or INDEX")
        if isinstance(category, (int, np.integer)) and not isinstance(category, bool):
            if 0 <= category < self.num_classes:
                return int(category)
        elif isinstance(category, str) and self.categories is not None:
            from dit3d.data.pc15k import resolve_category

            keys = {category.strip().lower()}
            try:
                keys |= set(resolve_category(category))  # a synset id matches its name
            except ValueError:
                pass
            for i, name in enumerate(self.categories):
                if name.lower() in keys:
                    return i
        raise ValueError(f"unknown category {category!r}; this model knows {known}")

    def denormalize(self, points: np.ndarray) -> np.ndarray:
        """Clouds ``(..., N, 3)`` from the training frame to the data frame (float32)."""
        if self.normalization["normalization"] == "global":
            points = np.asarray(points, dtype=np.float64) * self.normalization["std"] + np.asarray(
                self.normalization["mean"])
        return np.asarray(points, dtype=np.float32)

    @torch.no_grad()
    def sample_arrays(self, n: int, num_points: int = 2048, category: str | int | None = None,
                      seed: int | None = None, progress: bool = False, **options: Any) -> np.ndarray:
        """``n`` clouds of ``num_points`` points in the data frame.

        The same ``seed`` and options give bit-identical clouds on the CPU; ``None``
        draws a fresh seed. Torch's and NumPy's global random states are never touched.

        Args:
            n: number of clouds.
            num_points: points per cloud.
            category: name, synset id or label index; None for one-category models.
            seed: seeds the initial noise and every sampling step.
            progress: a progress bar per batch of ``batch_size`` clouds.
            **options: override the stored defaults: ``sampler`` (``"ddim"``/``"ddpm"``),
                ``steps`` (DDIM only; DDPM runs all ``T``), ``guidance``, ``eta``, ``batch_size``,
                ``cache_interval`` (reuse the blocks' attention and MLP outputs between full
                steps, :mod:`dit3d.nn.step_cache`; 1, the default, computes every step).

        Shapes:
            returns ``(n, num_points, 3)`` float32
        """
        n, num_points = positive_int(n, "n"), positive_int(num_points, "num_points")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        opts = self._options(options)
        label = self.label_of(category)
        g = self._generator(seed)
        out = np.empty((n, num_points, 3), dtype=np.float32)
        for start in range(0, n, opts["batch_size"]):
            size = min(opts["batch_size"], n - start)
            x = sample_point_clouds(self.net, self.diffusion, size, num_points, label, opts["sampler"], opts["steps"],
                                    float(opts["eta"]), float(opts["guidance"]), g, progress,
                                    int(opts["cache_interval"]), **self._guide_options(opts))
            out[start:start + size] = self.denormalize(x.double().cpu().numpy())
        return out

    def sample(self, n: int, num_points: int = 2048, category: str | int | None = None, seed: int | None = None,
               progress: bool = False, **options: Any) -> list[Any]:
        """``n`` :class:`trimesh.PointCloud` objects (arguments as :meth:`sample_arrays`)."""
        import trimesh

        return [trimesh.PointCloud(c) for c in self.sample_arrays(n, num_points, category, seed, progress, **options)]
