"""What ADiT's molecule and crystal generators share: one latent DiT + flow matching + the
autoencoder, stored in one pretrained folder.

A folder's ``kind`` says which systems its model was trained on: ``adit-molecules``,
``adit-crystals`` or ``adit-joint`` (both, from one autoencoder and one DiT). A joint folder
loads as a :class:`~dit3d.api.MoleculeGenerator` and as a :class:`~dit3d.api.CrystalGenerator`.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from dit3d.checks import check_autoguidance, check_guide_unused, check_time_interval, finite_float, positive_int
from dit3d.models.adit_sampling import adit_label, composition_atom_types, sample_latents
from dit3d.nn import DiT, frozen_copy
from dit3d.objectives import FlowMatching
from dit3d.objectives._utils import check_option
from dit3d.objectives.flow_matching import SOLVERS
from dit3d.pretrained import (WEIGHTS_NAME, PretrainedError, load_pretrained, load_state_strict, resolve_pretrained,
                              save_pretrained)
from dit3d.tokenizers.atoms import CRYSTAL, KIND_NAMES, MOLECULE, AtomAutoencoder
from dit3d.tokenizers.augment import FRAMES

if TYPE_CHECKING:  # only a type here
    from dit3d.models.adit_latent import ADiTLatentModule

__all__ = ["ADiTGenerator", "DEFAULT_SAMPLING", "FOLDER_KINDS", "SAMPLING_OPTIONS"]

SAMPLING_OPTIONS = ("steps", "solver", "guidance", "batch_size", "temperature", "autoguidance",
                    "autoguidance_interval")
#: Heun on 25 steps (49 network calls): on 300 molecules of the 11,250-step adit-qm9-cpu it scored
#: ADiT validity 0.267 against 0.253 for Euler on 100 and 0.270 for Heun on 50
#: (``data/adit_qm9_cpu/README.md``); every shipped ADiT folder samples with it
DEFAULT_SAMPLING: dict[str, Any] = {"steps": 25, "solver": "heun", "guidance": 1.0, "batch_size": 256,
                                    "temperature": 1.0, "autoguidance": 1.0, "autoguidance_interval": [0.0, 1.0]}
#: DiT settings a guide network must share with the model: it is called with the same inputs
GUIDE_MUST_MATCH = ("in_dim", "num_classes", "token_classes", "self_condition")

#: what to do when an element-conditioned model lacks its training compositions
REMEASURE = ("call ADiTLatentModule.measure_compositions(train_dataset) with the data it was trained on "
             "(a fresh `dit3d fit` does), then export again")
#: pretrained-folder kind by the set of system kinds the model was trained on
FOLDER_KINDS = {(MOLECULE,): "adit-molecules", (CRYSTAL,): "adit-crystals", (MOLECULE, CRYSTAL): "adit-joint"}


def trained_kinds(atom_count_hist: Tensor) -> tuple[int, ...]:
    """System kinds with a non-empty atom-count histogram row (``(2, M + 1)``)."""
    return tuple(k for k in (MOLECULE, CRYSTAL) if float(atom_count_hist[k].sum()) > 0)


class ADiTGenerator:
    """Base of the ADiT generators: loading, saving, and the batched latent sampling loop.

    Subclasses set :attr:`SYSTEM` (the kind they sample, 0 molecule or 1 crystal) and turn
    latents into their domain's objects.

    Args:
        autoencoder: the frozen stage-1 model (its decoder is used).
        dit: the latent DiT (EMA weights of a trained :class:`~dit3d.models.ADiTLatentModule`).
        flow: the flow-matching objective with its sampler.
        latent_mean, latent_std: ``(L,)`` statistics that de-standardise the DiT's latents.
        atom_count_hist: ``(2, M + 1)`` counts of training systems with ``n`` atoms, per
            kind (a ``(M + 1,)`` histogram is read as molecules only, the layout of older folders).
        sampling: defaults for :data:`SAMPLING_OPTIONS`.
        kind_sampling: per-kind overrides of ``sampling`` for a joint model, e.g.
            ``{"molecule": {"autoguidance": 4.0}}``: what the generator of that kind samples
            with instead (:meth:`set_sampling_defaults` with ``kind``).
        flow_config: the :class:`~dit3d.objectives.FlowMatching` arguments (saved with the weights).
        compositions, composition_weight: for a DiT conditioned on each atom's element
            (``token_classes``): the training compositions ``(F, Z + 1)`` (element counts)
            and ``(2, F)`` how many training systems of each kind have each; sampling then
            draws a composition instead of an atom count.
        element_kinds: the kinds whose elements the DiT was trained to be given
            (:attr:`ADiTLatentModule.element_kinds <dit3d.models.ADiTLatentModule>`); a
            kind outside them (crystals of ``element_conditioning="molecules"``) draws an
            atom count and gives the DiT label 0 (no element). ``None``: the kinds with
            stored compositions (folders written before this was saved).
        guide: a weaker latent DiT of the same latents (e.g. the same run at an earlier
            step) for autoguidance (:meth:`set_guide`; the ``autoguidance`` sampling option).
        frame: the pose the DiT learnt its systems in (``ADiTLatentModule(frame=...)``):
            ``"random"`` (every rotation) or ``"principal"`` (molecules in their principal-axes
            pose, so samples come out in it too).
    """

    SYSTEM: ClassVar[int]

    def __init__(self, autoencoder: AtomAutoencoder, dit: DiT, flow: FlowMatching, latent_mean: Tensor,
                 latent_std: Tensor, atom_count_hist: Tensor, sampling: dict[str, Any] | None = None,
                 flow_config: dict[str, Any] | None = None, compositions: Tensor | None = None,
                 composition_weight: Tensor | None = None, element_kinds: Sequence[int] | None = None,
                 guide: DiT | None = None, kind_sampling: Mapping[str, Mapping[str, Any]] | None = None,
                 frame: str = "random") -> None:
        hist = atom_count_hist.detach().cpu().float()
        if hist.dim() == 1:  # folders written before crystals: molecules only
            hist = torch.stack([hist, torch.zeros_like(hist)])
        if hist.dim() != 2 or hist.shape[0] != 2:
            raise ValueError(f"atom_count_hist must have shape (2, M + 1) (molecules, crystals), got {tuple(hist.shape)}")
        if float(hist[self.SYSTEM].sum()) <= 0:
            other = "CrystalGenerator" if self.SYSTEM == MOLECULE else "MoleculeGenerator"
            raise PretrainedError(f"this model was never trained on {KIND_NAMES[self.SYSTEM]}s (its atom-count "
                                  f"histogram for them is empty); load it with dit3d.{other}")
        if frame not in FRAMES:
            raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")
        self.autoencoder, self.dit, self.flow, self.frame = autoencoder, dit, flow, frame
        self.latent_mean, self.latent_std = latent_mean, latent_std
        self.atom_count_hist = hist
        self.compositions, self.composition_weight = self._check_compositions(dit, compositions, composition_weight)
        self.element_kinds = self._check_element_kinds(element_kinds)
        self.guide: DiT | None = None
        if guide is not None:
            self.set_guide(guide)
        self.flow_config = flow_config or {}
        self.sampling = {**DEFAULT_SAMPLING, **(sampling or {})}  # older folders: options added since at default
        self.shared_sampling = self._options(1, {})
        self.kind_sampling = self._check_kind_sampling(kind_sampling or {})
        self.sampling = self._effective_sampling()  # bad defaults (steps, solver, ...) fail here, not at sampling

    def _check_compositions(self, dit: DiT, table: Tensor | None,
                            weight: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        if dit.token_embed is None:
            if table is not None or weight is not None:
                raise ValueError("compositions given for a DiT without element conditioning (token_classes=0)")
            return None, None
        if table is None or weight is None:
            raise ValueError("this DiT is conditioned on each atom's element: give the training compositions "
                             "(compositions, composition_weight; ADiTLatentModule.measure_compositions)")
        table, weight = table.detach().cpu().long(), weight.detach().cpu().float()
        Z = dit.token_embed.num_embeddings
        if table.dim() != 2 or table.shape[1] != Z or weight.shape != (2, table.shape[0]):
            raise ValueError(f"compositions must be (F, {Z}) and composition_weight (2, F), got "
                             f"{tuple(table.shape)} and {tuple(weight.shape)}")
        if float(weight.sum()) <= 0:
            raise ValueError(f"no training composition is stored (composition_weight is all zero): {REMEASURE}")
        return table, weight

    def _check_element_kinds(self, kinds: Sequence[int] | None) -> tuple[int, ...]:
        if self.compositions is None:
            if kinds:
                raise ValueError(f"element_kinds {list(kinds)} given for a DiT without element conditioning")
            return ()
        if kinds is None:  # folders from before element_kinds was saved: the kinds with compositions
            kinds = [k for k in (MOLECULE, CRYSTAL) if float(self.composition_weight[k].sum()) > 0]
        kinds = tuple(sorted({int(k) for k in kinds}))
        if not set(kinds) <= {MOLECULE, CRYSTAL}:
            raise ValueError(f"element_kinds must be system kinds {MOLECULE} (molecule) / {CRYSTAL} (crystal), "
                             f"got {list(kinds)}")
        if self.SYSTEM in kinds and float(self.composition_weight[self.SYSTEM].sum()) <= 0:
            raise ValueError(f"the DiT was trained with the elements of {KIND_NAMES[self.SYSTEM]}s given, but no "
                             f"{KIND_NAMES[self.SYSTEM]} composition is stored: {REMEASURE}")
        return kinds

    def kind_conditioned(self, kind: int) -> bool:
        """Whether systems of ``kind`` give the DiT their elements (see ``element_kinds``)."""
        return kind in self.element_kinds

    @property
    def element_conditioned(self) -> bool:
        """Whether this generator's kind is sampled from a given composition."""
        return self.kind_conditioned(self.SYSTEM)

    @property
    def spacegroup_conditioning(self) -> bool:
        """Whether the DiT was trained with one class per crystal space group."""
        return self.dit.y_embed.num_classes > 2

    def to(self, device: str | torch.device) -> ADiTGenerator:
        """Move the networks and latent statistics to ``device``, e.g. ``"cuda"``."""
        self.autoencoder.to(device)
        self.dit.to(device)
        if self.guide is not None:
            self.guide.to(device)
        self.latent_mean, self.latent_std = self.latent_mean.to(device), self.latent_std.to(device)
        return self

    def set_sampling_defaults(self, kind: str | None = None, **options: Any) -> ADiTGenerator:
        """Change the stored sampling defaults (:data:`SAMPLING_OPTIONS`; saved by
        :meth:`save_pretrained`), checked before anything changes. With ``kind``
        (``"molecule"`` or ``"crystal"``) they apply only when the model samples that kind (a
        joint model's molecules, say, while its crystals keep the shared defaults); without,
        they change the shared defaults and replace every kind's overrides of those options.
        :attr:`sampling` is what this generator samples with (:attr:`shared_sampling` and its
        kind's :attr:`kind_sampling`), rebuilt here: change it through this method."""
        if kind is not None:
            self._check_kind(kind)
        checked = self._options(1, {**self.shared_sampling, **self.kind_sampling.get(kind, {}), **options})
        options = {k: checked[k] for k in options}
        if kind is None:
            self.shared_sampling = {**self.shared_sampling, **options}
            overrides = {k: {o: v for o, v in opts.items() if o not in options} for k, opts in self.kind_sampling.items()}
        else:
            overrides = {**self.kind_sampling, kind: {**self.kind_sampling.get(kind, {}), **options}}
        self.kind_sampling = {k: opts for k, opts in overrides.items() if opts}
        self.sampling = self._effective_sampling()
        return self

    def _check_kind(self, kind: str) -> None:
        """ValueError unless ``kind`` names a kind this model was trained on."""
        if kind not in KIND_NAMES:
            raise ValueError(f"kind must be one of {KIND_NAMES} (or None: every kind), got {kind!r}")
        if KIND_NAMES.index(kind) not in trained_kinds(self.atom_count_hist):
            raise ValueError(f"this model was never trained on {kind}s: a sampling default for them would never "
                             "apply")

    def _check_kind_sampling(self, kind_sampling: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """Per-kind overrides: kinds this model samples, known options, valid values (normalised as
        :meth:`set_sampling_defaults` stores them)."""
        if not isinstance(kind_sampling, Mapping):
            raise ValueError(f"kind_sampling must map a kind to its options, got {type(kind_sampling).__name__}")
        out = {}
        for kind, options in kind_sampling.items():
            if not isinstance(options, Mapping):
                raise ValueError(f"kind_sampling[{kind!r}] must map options to values, got {options!r}")
            try:
                self._check_kind(kind)
                checked = self._options(1, {**self.shared_sampling, **options})  # the values must make a valid set
            except ValueError as e:
                raise ValueError(f"kind_sampling[{kind!r}]: {e}") from None
            out[kind] = {k: checked[k] for k in options}
        return out

    def _effective_sampling(self) -> dict[str, Any]:
        """The checked defaults this generator samples with: the shared ones and its kind's overrides."""
        return self._options(1, {**self.shared_sampling, **self.kind_sampling.get(KIND_NAMES[self.SYSTEM], {})})

    def set_guide(self, guide: DiT | ADiTGenerator | None) -> ADiTGenerator:
        """Guide sampling with ``guide`` from now on when the ``autoguidance`` option is not 1
        (Karras et al. 2024; :func:`~dit3d.objectives.autoguidance`), or drop the guide
        (``None``). The guide must be a weaker latent DiT of the same latents, such as the
        same run at an earlier step; it is saved with the model. Given as a generator (e.g.
        ``MoleculeGenerator.from_pretrained(earlier_folder)``), its latent DiT is taken after
        checking that it learnt this model's latents: the same encoder and latent statistics.

        Raises:
            ValueError: a guide built for other inputs (latent width, labels, element
                tokens or self-conditioning differ from the model's), or a generator of
                other latents.
        """
        if guide is None:
            for kind, options in (("shared", self.shared_sampling), *self.kind_sampling.items()):
                try:
                    check_guide_unused(options)
                except ValueError as e:
                    raise ValueError(f"{e} ({kind} defaults; a shared set_sampling_defaults(autoguidance=1) "
                                     "clears every kind's)") from None
            self.guide = None
            return self
        if isinstance(guide, ADiTGenerator):
            guide = self._same_latents(guide).dit
        if not isinstance(guide, DiT):
            raise ValueError(f"the guide must be a dit3d.nn.DiT (a latent DiT), got {type(guide).__name__}")
        differ = {k: (guide.config.get(k), self.dit.config.get(k)) for k in GUIDE_MUST_MATCH
                  if guide.config.get(k) != self.dit.config.get(k)}
        if differ:
            raise ValueError("the guide must take the model's inputs; (guide, model) differ in " +
                             ", ".join(f"{k} {g!r} vs {m!r}" for k, (g, m) in differ.items()))
        device = next(self.dit.parameters()).device
        self.guide = frozen_copy(guide, device)
        return self

    def _same_latents(self, other: ADiTGenerator) -> ADiTGenerator:
        """``other`` if its latent DiT learnt this model's latents and predicts what this
        model's does, else ValueError."""
        if other.frame != self.frame:
            raise ValueError(f"the guide learnt its systems in the {other.frame!r} frame, this model in the "
                             f"{self.frame!r} one: it must learn the same latents")
        if other.flow_config != self.flow_config:
            raise ValueError(f"the guide was trained with other flow-matching settings ({other.flow_config} vs "
                             f"{self.flow_config}): it must predict what this model predicts")
        if not self.autoencoder.same_encoder(other.autoencoder):
            raise ValueError("the guide was trained on another autoencoder's latents (its encoder differs): it "
                             "must be an earlier or smaller latent DiT of this model's autoencoder")
        stats = [(other.latent_mean, self.latent_mean), (other.latent_std, self.latent_std)]
        if not all(a.shape == b.shape and torch.allclose(a.cpu(), b.cpu(), rtol=1e-3, atol=1e-6) for a, b in stats):
            raise ValueError("the guide standardises its latents with other statistics than this model; give a "
                             "latent DiT trained on this model's latents")
        return other

    def replace_autoencoder(self, autoencoder: AtomAutoencoder) -> ADiTGenerator:
        """Decode with a frozen copy of ``autoencoder`` from now on: one whose decoder was
        fine-tuned with this model's encoder frozen (``ADiTAutoencoderModule(init_from=...,
        freeze_encoder=True)``). The latent DiT was trained on that encoder's latents, so any
        other encoder is refused.

        Raises:
            ValueError: another architecture, or encoder weights that differ beyond float16 rounding.
        """
        if autoencoder.config != self.autoencoder.config:
            raise ValueError(f"this autoencoder is built as {autoencoder.config}, the model's as "
                             f"{self.autoencoder.config}: the latent DiT can only use the model's own architecture")
        if not self.autoencoder.same_encoder(autoencoder):
            raise ValueError("this autoencoder's encoder differs from the one the latent DiT was trained on, so its "
                             "decoder expects other latents; fine-tune a decoder with freeze_encoder=True from "
                             "this model's autoencoder instead")
        device = next(self.autoencoder.parameters()).device
        self.autoencoder = frozen_copy(autoencoder, device)
        return self

    def quantize_int8(self) -> ADiTGenerator:
        """Run the latent DiT's attention and MLP layers in int8 from now on
        (:mod:`dit3d.nn.quantize`; CPU only; the autoencoder stays float): the shipped DiT-Ti
        models sample about 1.2-1.5x faster at validity within sampling noise (README's
        benchmarks). Irreversible for this generator; :meth:`save_pretrained` refuses a
        quantized one."""
        from dit3d.nn.quantize import quantize_int8

        for net in (self.dit, self.guide):
            if net is not None:
                quantize_int8(net.eval())  # converts what is still float: a second call changes nothing
        return self

    # --------------------------------------------------------------- loading
    @classmethod
    def from_lightning(cls, module: ADiTLatentModule, sampling: dict[str, Any] | None = None) -> ADiTGenerator:
        """From a trained :class:`~dit3d.models.ADiTLatentModule` (its EMA network)."""
        hp = module.hparams
        flow_config = dict(prediction=hp.prediction, self_condition_prob=hp.self_condition_prob)
        tables = {"compositions": module.compositions.clone(), "composition_weight": module.composition_weight.clone(),
                  "element_kinds": module.element_kinds} if module.element_kinds else {}
        return cls(module.autoencoder, module.sampling_dit, module.flow, module.latent_mean.clone(),
                   module.latent_std.clone(), module.atom_count_hist.clone(), sampling, flow_config,
                   frame=hp.frame, **tables)

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike) -> ADiTGenerator:
        """Load a folder written by :meth:`save_pretrained`, or a shipped name.

        Raises:
            PretrainedError: missing or unreadable files, a folder of another kind (e.g. a
                crystal-only model loaded as molecules), or weights that do not fit the config.
        """
        directory = resolve_pretrained(path_or_name)
        accepted = tuple(kind for kinds, kind in FOLDER_KINDS.items() if cls.SYSTEM in kinds)
        return cls.from_loaded(directory, *load_pretrained(directory, accepted))

    @classmethod
    def from_loaded(cls, directory: str | os.PathLike, config: dict[str, Any],
                    weights: dict[str, Tensor]) -> ADiTGenerator:
        """Build from the ``(config, weights)`` that :func:`~dit3d.pretrained.load_pretrained`
        read from ``directory`` (named in errors); :meth:`from_pretrained` with the reading done."""
        missing = {"autoencoder", "dit", "flow"} - set(config)
        if missing:
            raise PretrainedError(f"{directory}: config.json lacks {sorted(missing)}; re-export the model")
        try:
            ae, dit, flow = AtomAutoencoder(**config["autoencoder"]), DiT(**config["dit"]), FlowMatching(**config["flow"])
        except (TypeError, ValueError) as e:
            raise PretrainedError(f"{directory}: bad config ({e}); re-export the model") from None
        weights = {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}  # float16 folders
        part = lambda prefix: {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}  # noqa: E731
        load_state_strict(ae, part("autoencoder."), str(directory))
        load_state_strict(dit, part("dit."), str(directory))
        guide = None
        if config.get("guide") is not None:
            try:
                guide = DiT(**config["guide"])
            except (TypeError, ValueError) as e:
                raise PretrainedError(f"{directory}: bad guide config ({e}); re-export the model") from None
            load_state_strict(guide, part("guide."), str(directory))
            guide.eval()
        lacking = [k for k in ("latent_mean", "latent_std", "atom_count_hist") if k not in weights]
        if lacking:
            raise PretrainedError(f"{directory}: {WEIGHTS_NAME} lacks {lacking}; re-export the model")
        try:
            return cls(ae.eval(), dit.eval(), flow, weights["latent_mean"], weights["latent_std"],
                       weights["atom_count_hist"], config.get("sampling"), config["flow"],
                       weights.get("compositions"), weights.get("composition_weight"), config.get("element_kinds"),
                       guide, config.get("kind_sampling"), config.get("frame", "random"))
        except ValueError as e:  # e.g. bad stored sampling defaults, a histogram of the wrong shape
            raise PretrainedError(f"{directory}: {e}; re-export the model") from None

    def save_pretrained(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None,
                        weights_dtype: str = "float32") -> Path:
        """Weights (safetensors) and config (JSON) together; ``extra`` is stored in the config.
        The folder's kind names every system the model was trained on, so a joint model
        saved from either generator loads as both. ``weights_dtype="float16"`` stores the
        network weights rounded to half precision (half the size; loading computes in
        float32 again); the latent statistics and histogram stay float32."""
        from dit3d.nn.quantize import check_float

        check_float(self.dit)
        if self.guide is not None:
            check_float(self.guide)
        if weights_dtype not in ("float32", "float16"):
            raise ValueError(f"weights_dtype must be 'float32' or 'float16', got {weights_dtype!r}")
        dtype = getattr(torch, weights_dtype)
        cast = lambda v: v.to(dtype) if v.is_floating_point() else v  # noqa: E731
        state = {f"autoencoder.{k}": cast(v) for k, v in self.autoencoder.state_dict().items()}
        state |= {f"dit.{k}": cast(v) for k, v in self.dit.state_dict().items()}
        if self.guide is not None:
            state |= {f"guide.{k}": cast(v) for k, v in self.guide.state_dict().items()}
        state |= {"latent_mean": self.latent_mean, "latent_std": self.latent_std,
                  "atom_count_hist": self.atom_count_hist}
        if self.compositions is not None:
            state |= {"compositions": self.compositions, "composition_weight": self.composition_weight}
        config = {"autoencoder": self.autoencoder.config, "dit": self.dit.config, "flow": self.flow_config,
                  "sampling": self.shared_sampling, "weights_dtype": weights_dtype}
        if self.kind_sampling:
            config["kind_sampling"] = self.kind_sampling
        if self.element_kinds:
            config["element_kinds"] = list(self.element_kinds)
        if self.frame != "random":  # written only when set, so older folders re-save byte for byte
            config["frame"] = self.frame
        if self.guide is not None:
            config["guide"] = self.guide.config
        clash = set(extra or {}) & (set(config) | {"kind"})
        if clash:
            raise ValueError(f"extra config keys {sorted(clash)} are reserved; choose other names")
        kind = FOLDER_KINDS[trained_kinds(self.atom_count_hist)]
        return save_pretrained(directory, kind, config | (extra or {}), state)

    # -------------------------------------------------------------- sampling
    def _options(self, n: int, options: dict[str, Any]) -> dict[str, Any]:
        positive_int(n, "n")
        unknown = set(options) - set(SAMPLING_OPTIONS)
        if unknown:
            raise ValueError(f"unknown sampling options {sorted(unknown)}; choose from {SAMPLING_OPTIONS}")
        opts = {**self.sampling, **options}
        for key in ("steps", "batch_size"):
            opts[key] = positive_int(opts[key], key)
        opts["temperature"] = finite_float(opts["temperature"], "temperature", positive=True)
        opts["guidance"] = finite_float(opts["guidance"], "guidance")
        opts["autoguidance"] = check_autoguidance(opts["autoguidance"], self.guide is not None)
        opts["autoguidance_interval"] = check_time_interval(opts["autoguidance_interval"], "autoguidance_interval")
        check_option("solver", opts["solver"], SOLVERS)
        return opts

    def _latent_batches(self, n: int, seed: int | None, options: dict[str, Any], spacegroup: int | None = None,
                        progress: bool = False) -> Iterator[tuple[list[int], Tensor, Tensor, Tensor]]:
        """Draw ``n`` atom counts from this kind's histogram and yield mini-batches of
        ``(sample indices, counts (b,), latents (b, N, L), mask (b, N))``; counts are
        sorted first so each batch pads little. One ``torch.Generator`` seeded by ``seed``
        drives every draw, so a seed fixes the samples (``None``: a fresh seed). Bad
        arguments raise here, before any sampling. ``progress``: a tqdm bar counting systems."""
        opts = self._options(n, options)
        label = adit_label(self.SYSTEM, spacegroup, self.spacegroup_conditioning)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        return self._iter_batches(n, seed, opts, label, progress)

    def _token_types(self, drawn: Tensor) -> Tensor | None:
        """The DiT's per-token elements for one batch: a drawn composition ``(b, Z + 1)``
        spelled out as ``(b, N)`` atomic numbers; for a kind sampled without elements
        (``drawn`` its atom counts ``(b,)``) zeros if the DiT takes elements, else None."""
        if self.element_conditioned:
            return composition_atom_types(drawn)
        if self.dit.token_embed is None:
            return None
        return torch.zeros(len(drawn), int(drawn.max()), dtype=torch.long)  # label 0: no element given

    @torch.no_grad()
    def _iter_batches(self, n: int, seed: int | None, opts: dict[str, Any], label: int,
                      progress: bool) -> Iterator[tuple[list[int], Tensor, Tensor, Tensor]]:
        g = torch.Generator().manual_seed(seed if seed is not None else torch.Generator().seed())
        if self.element_conditioned:
            drawn = self.compositions[torch.multinomial(self.composition_weight[self.SYSTEM], n, replacement=True,
                                                        generator=g)]  # (n, Z + 1)
            counts = drawn.sum(-1)  # (n,)
        else:
            counts = torch.multinomial(self.atom_count_hist[self.SYSTEM], n, replacement=True, generator=g)  # (n,)
            drawn = counts
        order = torch.argsort(counts, stable=True)  # similar sizes share a batch: little padding
        self.autoencoder.eval()
        with tqdm(total=n, desc=f"sampling {KIND_NAMES[self.SYSTEM]}s", unit=KIND_NAMES[self.SYSTEM],
                  disable=not progress, leave=False) as bar:
            for chunk in order.split(opts["batch_size"]):
                types = self._token_types(drawn[chunk])  # (b, N) or None
                z, mask = sample_latents(self.dit, self.flow, counts[chunk], self.latent_mean, self.latent_std, label,
                                         opts["steps"], opts["solver"], opts["guidance"], g,
                                         temperature=opts["temperature"], atom_types=types, guide=self.guide,
                                         autoguidance_scale=opts["autoguidance"],
                                         autoguidance_interval=tuple(opts["autoguidance_interval"]))
                bar.update(len(chunk))
                yield chunk.tolist(), counts[chunk], z, mask
