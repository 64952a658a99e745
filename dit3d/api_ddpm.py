"""What the user-facing generators of DDPM-trained, class-conditional networks share.

:class:`DDPMGenerator` is the base of :class:`~dit3d.api_shapes.ShapeGenerator` (DiT-3D
point clouds) and :class:`~dit3d.api_images.ImageGenerator` (image DiT): it holds the EMA
network, its :class:`~dit3d.objectives.GaussianDiffusion` schedule and checked sampling
defaults, writes and reads pretrained folders (``config.json`` + ``model.safetensors``,
weights under ``net.``), and checks sampling options. Subclasses add their domain: what
the config stores besides the network and schedule, labels, and how samples are drawn
and returned. Lightning checkpoints are read by :mod:`dit3d.models.checkpoint` (without
unpickling code).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from dit3d.checks import check_autoguidance, check_guide_unused, finite_float, positive_int
from dit3d.models.checkpoint import load_lightning_checkpoint
from dit3d.models.ddpm_generation import SAMPLERS
from dit3d.nn import frozen_copy
from dit3d.objectives import GaussianDiffusion
from dit3d.pretrained import PretrainedError, load_pretrained, load_state_strict, resolve_pretrained, save_pretrained

__all__ = ["SAMPLING_OPTIONS", "DDPMGenerator", "load_lightning_checkpoint"]

#: options :meth:`DDPMGenerator._options` accepts (stored defaults and per-call overrides)
SAMPLING_OPTIONS = ("sampler", "steps", "guidance", "eta", "batch_size", "cache_interval", "autoguidance")
#: what older folders, written before an option existed, sample with
OPTION_FALLBACKS = {"cache_interval": 1, "autoguidance": 1.0}

_G = TypeVar("_G", bound="DDPMGenerator")


class DDPMGenerator:
    """Base of the samplers of DDPM-trained, class-conditional noise predictors: DDIM or
    ancestral DDPM, classifier-free guidance, seeded noise drawn on the CPU.

    Subclasses set the class attributes below, call ``super().__init__(net, diffusion, guide)``,
    then set :attr:`sampling` with :meth:`_checked_defaults`, and implement
    :meth:`_config_fields` and :meth:`_from_config` (the domain part of ``config.json``).

    Args:
        net: the noise predictor (the EMA copy of a trained module), with a ``config`` dict
            of its constructor arguments (``num_classes`` among them; 0: unconditional).
        diffusion: :class:`~dit3d.objectives.GaussianDiffusion` arguments it was trained with.
        guide: a weaker network (or generator) for autoguidance, as :meth:`set_guide` takes it.

    Attributes:
        net: the network.
        guide: a weaker copy of the network for autoguidance (:meth:`set_guide`), or ``None``.
        diffusion_config: ``diffusion`` as a dict (what ``config.json`` stores).
        diffusion: the schedule.
        num_classes: the network's class count (0: unconditional).
        sampling: checked sampling defaults, one value per :data:`SAMPLING_OPTIONS` entry.
    """

    #: ``kind`` of the pretrained folders (``config.json``)
    KIND: ClassVar[str]
    #: config key of the network's constructor arguments
    NET_KEY: ClassVar[str]
    #: the network class, rebuilt from ``config[NET_KEY]``
    NET_CLASS: ClassVar[type[nn.Module]]
    #: the network's name in error messages
    NET_NAME: ClassVar[str]
    #: domain config keys a pretrained folder must have, besides the network, ``"diffusion"`` and ``"sampling"``
    CONFIG_KEYS: ClassVar[tuple[str, ...]] = ()

    sampling: dict[str, Any]

    def __init__(self, net: nn.Module, diffusion: Mapping[str, Any],
                 guide: nn.Module | DDPMGenerator | None = None) -> None:
        self.net = net
        self.diffusion_config = dict(diffusion)
        self.diffusion = GaussianDiffusion(**self.diffusion_config)
        self.num_classes = int(net.config.get("num_classes", 0))
        self.guide: nn.Module | None = None if guide is None else self._checked_guide(guide)

    def to(self: _G, device: str | torch.device) -> _G:
        """Move the networks to ``device``, e.g. ``"cuda"`` (seeded noise is still drawn on the CPU)."""
        self.net.to(device)
        if self.guide is not None:
            self.guide.to(device)
        return self

    def set_guide(self: _G, guide: nn.Module | DDPMGenerator | None) -> _G:
        """Guide sampling with ``guide`` from now on when the ``autoguidance`` option is not 1
        (Karras et al. 2024, :func:`~dit3d.objectives.autoguidance`: extrapolate from a weaker
        model of the same data towards this one), or drop the guide (``None``). The guide is
        the same network at an earlier training step (same architecture; a generator's must
        also share the diffusion schedule); it is saved with the model.

        Raises:
            ValueError: another architecture or schedule, or dropping the guide while the
                stored ``autoguidance`` default needs it.
        """
        if guide is None:
            check_guide_unused(self.sampling)
        self.guide = None if guide is None else self._checked_guide(guide)
        return self

    def _checked_guide(self, guide: nn.Module | DDPMGenerator) -> nn.Module:
        """A frozen eval-mode copy of ``guide``'s network on the model's device, after checking
        that it is built like the model and shares its diffusion schedule."""
        if isinstance(guide, DDPMGenerator):
            if guide.diffusion_config != self.diffusion_config:
                raise ValueError(f"the guide was trained with another diffusion schedule ({guide.diffusion_config} "
                                 f"vs {self.diffusion_config}): it must predict what this model predicts")
            guide = guide.net
        if type(guide) is not type(self.net) or getattr(guide, "config", None) != self.net.config:
            raise ValueError(f"the guide must be a {type(self.net).__name__} built like the model (the same run at "
                             f"an earlier step); got a {type(guide).__name__} with config "
                             f"{getattr(guide, 'config', None)}")
        device = next(self.net.parameters()).device
        return frozen_copy(guide, device)

    def quantize_int8(self: _G) -> _G:
        """Run the trunk's attention and MLP layers in int8 from now on (:mod:`dit3d.nn.quantize`;
        CPU only): DiT-3D-S/4 samples about 1.7x faster, small models (96 wide) no faster; the
        shipped point-cloud model's 1-NNA is unchanged within seed noise (its card). Irreversible
        for this generator: reload the folder for float sampling; :meth:`save_pretrained`
        refuses a quantized one."""
        from dit3d.nn.quantize import quantize_int8

        for net in (self.net, self.guide):
            if net is not None:
                quantize_int8(net.eval())  # converts what is still float: a second call changes nothing
        return self

    def compile(self: _G) -> _G:
        """Compile the network with ``torch.compile`` for faster sampling from now on
        (:mod:`dit3d.nn.compiled`): int8 DiT-3D-S/4 samples about 1.3x faster on two CPU
        threads. The first sampling call compiles (seconds to a minute on a CPU, needs a
        C++ compiler there), later ones reuse it. Call it after :meth:`to` and
        :meth:`quantize_int8`. The network's outputs match the uncompiled ones to float
        rounding, which stochastic samplers carry along (the chair model's 1-NNA is
        unchanged, its card); :meth:`save_pretrained` still works."""
        from dit3d.nn.compiled import compile_for_sampling

        for net in (self.net, self.guide):
            if net is not None:
                compile_for_sampling(net.eval())
        return self

    # --------------------------------------------------------------- loading
    def _config_fields(self) -> dict[str, Any]:
        """The domain part of ``config.json`` (JSON-ready), written by :meth:`save_pretrained`."""
        raise NotImplementedError

    @classmethod
    def _from_config(cls: type[_G], net: nn.Module, config: dict[str, Any], guide: nn.Module | None) -> _G:
        """A generator from a loaded network (eval mode), the whole ``config.json`` and the
        stored autoguidance guide (``None`` when the folder has none)."""
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls: type[_G], path_or_name: str | os.PathLike) -> _G:
        """Load a folder written by :meth:`save_pretrained`, or a shipped name.

        Raises:
            PretrainedError: missing or unreadable files, a folder of another kind, a config
                that lacks fields or holds bad ones, or weights that do not fit the config.
        """
        directory = resolve_pretrained(path_or_name)
        config, weights = load_pretrained(directory, cls.KIND)
        missing = {cls.NET_KEY, "diffusion", *cls.CONFIG_KEYS, "sampling"} - set(config)
        if missing:
            raise PretrainedError(f"{directory}: config.json lacks {sorted(missing)}; re-export the model")
        try:
            net = cls.NET_CLASS(**config[cls.NET_KEY])
        except (TypeError, ValueError) as e:
            raise PretrainedError(f"{directory}: bad {cls.NET_NAME} config ({e})") from None
        load_state_strict(net, {k[4:]: v for k, v in weights.items() if k.startswith("net.")}, str(directory))
        guide = None
        if config.get("guide") is not None:  # autoguidance: a weaker copy of the network
            guide = cls.NET_CLASS(**config[cls.NET_KEY])
            load_state_strict(guide, {k[6:]: v for k, v in weights.items() if k.startswith("guide.")}, str(directory))
        try:
            return cls._from_config(net.eval(), config, guide)
        except (TypeError, ValueError, KeyError) as e:
            raise PretrainedError(f"{directory}: bad config ({type(e).__name__}: {e}); re-export the model") from None

    def save_pretrained(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Network weights (safetensors, under ``net.``) and config (JSON: network arguments,
        diffusion schedule, the domain fields, sampling defaults), written atomically;
        ``extra`` is stored in the config too (e.g. provenance)."""
        from dit3d.nn.quantize import check_float

        check_float(self.net)
        state = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        config = {self.NET_KEY: self.net.config, "diffusion": self.diffusion_config, **self._config_fields(),
                  "sampling": self.sampling}
        if self.guide is not None:
            check_float(self.guide)
            state |= {f"guide.{k}": v for k, v in self.guide.state_dict().items()}
            config["guide"] = True  # built like the network
        clash = set(extra or {}) & (set(config) | {"kind"})
        if clash:
            raise ValueError(f"extra config keys {sorted(clash)} are reserved; choose other names")
        return save_pretrained(directory, self.KIND, config | (extra or {}), state)

    # -------------------------------------------------------------- sampling
    def _checked_defaults(self, sampling: Mapping[str, Any] | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """``defaults`` overridden by ``sampling``, checked: the value of :attr:`sampling`. A
        default DDIM step count above the schedule's ``T`` becomes ``T`` (a short schedule
        cannot take more steps); one given in ``sampling`` is kept as it is."""
        defaults = dict(defaults)
        if isinstance(defaults.get("steps"), int):
            defaults["steps"] = min(defaults["steps"], self.diffusion.num_timesteps)
        return self._options({**OPTION_FALLBACKS, **defaults, **(sampling or {})}, check_only=True)

    def _options(self, options: dict[str, Any], check_only: bool = False) -> dict[str, Any]:
        """Per-call ``options`` over :attr:`sampling`, checked (``check_only``: ``options`` is
        a complete set, checked as it is)."""
        unknown = set(options) - set(SAMPLING_OPTIONS)
        if unknown:
            raise ValueError(f"unknown sampling options {sorted(unknown)}; choose from {SAMPLING_OPTIONS}")
        # older folders lack some options: they sample as before the option existed
        opts = dict(options) if check_only else {**OPTION_FALLBACKS, **self.sampling, **options}
        if opts["sampler"] not in SAMPLERS:
            raise ValueError(f"unknown sampler {opts['sampler']!r}; choose one of {SAMPLERS}")
        if not check_only and opts["sampler"] == "ddpm" and "steps" not in options:
            opts["steps"] = None  # the stored DDIM step count does not apply: DDPM runs all T steps
        if opts["steps"] is not None:
            opts["steps"] = positive_int(opts["steps"], "steps")
        opts["batch_size"] = positive_int(opts["batch_size"], "batch_size")
        if "cache_interval" in opts:
            opts["cache_interval"] = positive_int(opts["cache_interval"], "cache_interval")
        for key in ("guidance", "eta"):
            opts[key] = finite_float(opts[key], key)  # plain floats: numpy scalars would not serialise
        opts["autoguidance"] = check_autoguidance(opts["autoguidance"], self.guide is not None)
        return opts

    def set_sampling_defaults(self: _G, **options: Any) -> _G:
        """Change the stored sampling defaults (:data:`SAMPLING_OPTIONS`; saved by
        :meth:`save_pretrained`), checked before anything changes."""
        self.sampling = self._options({**OPTION_FALLBACKS, **self.sampling, **options}, check_only=True)
        return self

    def _guide_options(self, opts: Mapping[str, Any]) -> dict[str, Any]:
        """The sampling functions' autoguidance arguments for checked options ``opts``."""
        return {"guide": self.guide, "autoguidance_scale": opts["autoguidance"]}

    @staticmethod
    def _generator(seed: int | None) -> torch.Generator:
        """CPU generator seeded with ``seed``, or with a fresh seed for ``None`` (torch's global state untouched)."""
        return torch.Generator().manual_seed(int(seed) if seed is not None else torch.Generator().seed())
