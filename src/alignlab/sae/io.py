"""Coder folders: alignlab's own format, SAELens' layout (export and import), sparsify's (import).

Native folder (written by :func:`save_coder`, read by :func:`load_coder`):

- ``cfg.json``: ``format: "alignlab.sae"``, ``format_version``, ``coder`` (the
  :class:`CoderConfig`), ``site`` and ``site_out``, ``model`` (spec, revision, family, widths and
  the sha256 of the unembedding, so a coder refuses to load on another model), the input and
  output scales already folded into the weights, the sink rule and how it was trained.
- ``sae.safetensors``: the coder's tensors (``W_enc`` (width, d_in), ``b_enc``, ``W_dec``
  (width, d_out), ``b_dec``, and ``W_skip`` / ``threshold`` where the architecture has them).

SAELens folder (:func:`export_saelens`): ``cfg.json`` with SAELens 6 keys (``architecture``,
``d_in``, ``d_sae``, ``dtype``, ``device``, ``apply_b_dec_to_input``, ``normalize_activations``,
``reshape_activations``, ``metadata`` with ``model_name`` and ``hook_name``; ``k`` for topk;
``d_out`` for transcoders) and ``sae_weights.safetensors`` with ``W_enc`` (d_in, d_sae),
``b_enc``, ``W_dec`` (d_sae, d_out), ``b_dec``, and ``threshold`` (jumprelu) / ``W_skip``.
Scales are already folded, so ``normalize_activations`` is ``"none"``.

sparsify folder (import only): ``cfg.json`` (``d_in``, ``num_latents`` or ``expansion_factor``,
``k``, ``transcode``, ``skip_connection``) and ``sae.safetensors`` with ``encoder.weight``,
``encoder.bias``, ``W_dec``, ``b_dec`` (and ``W_skip``); the folder's name is the hookpoint.

Every writer writes to temporary names and renames, ``cfg.json`` last: a folder without
``cfg.json`` is unfinished.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import __version__
from ..errors import ArtifactError
from ..models import LoadedModel
from ..runs import atomic_write_json, atomic_write_tensors, read_tensors
from .arch import CoderConfig, SparseCoder, architecture_names, build_coder
from .data import SinkRule

FORMAT = "alignlab.sae"
FORMAT_VERSION = 1
NATIVE_WEIGHTS = "sae.safetensors"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SPARSIFY_WEIGHTS = "sae.safetensors"
CFG = "cfg.json"
SAELENS_FORMAT_VERSION = "6.0.0"  # the cfg.json layout written: SAELens >= 6 (nested metadata)


@dataclass
class CoderMeta:
    """Where a coder reads and writes, which model it belongs to, and how it was made."""

    site: str
    site_out: str
    model: dict | None = None  # LoadedModel.describe(); None when unknown (imported)
    input_scale: float = 1.0  # folded into the weights already
    output_scale: float = 1.0
    sinks: dict = field(default_factory=lambda: asdict(SinkRule()))
    training: dict = field(default_factory=dict)

    @property
    def sink_rule(self) -> SinkRule:
        return SinkRule(**self.sinks)


@dataclass
class LoadedCoder:
    coder: SparseCoder
    meta: CoderMeta
    path: Path
    source_format: str  # "alignlab", "saelens" or "sparsify"


# ----- native --------------------------------------------------------------------------

def save_coder(coder: SparseCoder, folder: str | Path, meta: CoderMeta) -> Path:
    """Write ``coder`` as a native folder (weights first, ``cfg.json`` last)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CFG).unlink(missing_ok=True)  # the folder reads as unfinished until the end
    tensors = {k: v.detach().cpu().contiguous() for k, v in coder.state_dict().items()}
    atomic_write_tensors(folder / NATIVE_WEIGHTS, tensors)
    cfg = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "alignlab_version": __version__,
        "coder": coder.cfg.to_json(), **asdict(meta),
    }
    atomic_write_json(folder / CFG, cfg)
    return folder


def load_coder(folder: str | Path, site: str | None = None) -> LoadedCoder:
    """Read a native, SAELens or sparsify folder (told apart by their files).

    ``site`` names the input site for folders that do not say (sparsify; SAELens hook names
    alignlab cannot map).
    """
    folder = Path(folder)
    cfg = _read_cfg(folder)
    if cfg.get("format") == FORMAT:
        return _load_native(folder, cfg)
    if (folder / SAELENS_WEIGHTS).is_file():
        return import_saelens(folder, site)
    if (folder / SPARSIFY_WEIGHTS).is_file() and ("k" in cfg or "num_latents" in cfg):
        return import_sparsify(folder, site)
    raise ArtifactError(
        f"{folder} is not a coder folder alignlab knows: expected cfg.json with "
        f"{NATIVE_WEIGHTS} (alignlab or sparsify) or {SAELENS_WEIGHTS} (SAELens)"
    )


def _read_cfg(folder: Path) -> dict:
    path = folder / CFG
    if not folder.is_dir():
        raise ArtifactError(f"SAE folder {folder} does not exist; give a folder with {CFG}")
    if not path.is_file():
        raise ArtifactError(
            f"{folder} has no {CFG}: it is not an SAE folder, or its writer stopped before the end"
        )
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); re-export or retrain it") from exc
    if not isinstance(cfg, dict):
        raise ArtifactError(f"{path} holds a {type(cfg).__name__}, not a JSON object")
    return cfg


def _read_tensors(path: Path) -> dict[str, Tensor]:
    return read_tensors(path, "the SAE folder is incomplete or damaged: export or train it again")


def _load_native(folder: Path, cfg: dict) -> LoadedCoder:
    version = cfg.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{folder / CFG} has format_version {version!r}; this alignlab ({__version__}) reads "
            f"version {FORMAT_VERSION}; load it with the alignlab that wrote it"
        )
    coder = _build(CoderConfig.from_json(cfg["coder"]), folder)
    tensors = _read_tensors(folder / NATIVE_WEIGHTS)
    try:
        coder.load_state_dict(tensors)
    except RuntimeError as exc:
        raise ArtifactError(f"{folder / NATIVE_WEIGHTS} does not match its cfg.json: {_first_line(exc)}") from exc
    meta_keys = CoderMeta.__dataclass_fields__
    meta = CoderMeta(**{k: v for k, v in cfg.items() if k in meta_keys})
    return LoadedCoder(coder.eval(), meta, folder, "alignlab")


def _build(cfg: CoderConfig, folder: Path) -> SparseCoder:
    if cfg.arch not in architecture_names():
        raise ArtifactError(
            f"{folder} holds a {cfg.arch!r} coder; this alignlab knows {', '.join(architecture_names())}"
        )
    return build_coder(cfg, seed=None)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_model(loaded: LoadedCoder, lm: LoadedModel) -> None:
    """Refuse a coder made on another model (by unembedding hash, else by width)."""
    recorded = loaded.meta.model or {}
    expected = recorded.get("unembedding_hash")
    if expected and expected != lm.anatomy.unembedding_hash():
        raise ArtifactError(
            f"the SAE in {loaded.path} was trained on model {recorded.get('model')!r} "
            f"(revision {recorded.get('revision')!r}); {lm.spec!r} has a different unembedding. "
            f"Load it with --model {recorded.get('model')}"
        )
    if loaded.coder.cfg.d_in != lm.d_model or loaded.coder.cfg.out_dim != lm.d_model:
        raise ArtifactError(
            f"the SAE in {loaded.path} reads width {loaded.coder.cfg.d_in} and writes "
            f"{loaded.coder.cfg.out_dim}, but {lm.spec!r} has d_model {lm.d_model}; use the model it was made for"
        )


# ----- site names <-> TransformerLens hook names -----------------------------------------

def site_to_hook(site: str) -> str:
    """The TransformerLens hook SAELens would call this site."""
    kind, layer = site.split(".")
    i = int(layer)
    if kind == "resid":
        return "blocks.0.hook_resid_pre" if i == 0 else f"blocks.{i - 1}.hook_resid_post"
    return {"attn": f"blocks.{i}.hook_attn_out", "mlp": f"blocks.{i}.hook_mlp_out",
            "mlp_in": f"blocks.{i}.ln2.hook_normalized"}[kind]


def hook_to_site(hook: str) -> str | None:
    """Inverse of :func:`site_to_hook` (plus ``hook_resid_pre`` of any block); None if unknown."""
    patterns = [
        (r"blocks\.(\d+)\.hook_resid_post", lambda i: f"resid.{i + 1}"),
        (r"blocks\.(\d+)\.hook_resid_pre", lambda i: f"resid.{i}"),
        (r"blocks\.(\d+)\.hook_attn_out", lambda i: f"attn.{i}"),
        (r"blocks\.(\d+)\.hook_mlp_out", lambda i: f"mlp.{i}"),
        (r"blocks\.(\d+)\.(?:ln2\.hook_normalized|hook_mlp_in)", lambda i: f"mlp_in.{i}"),
    ]
    for pattern, site in patterns:
        match = re.fullmatch(pattern, hook or "")
        if match:
            return site(int(match.group(1)))
    return None


# ----- SAELens -----------------------------------------------------------------------------

def export_saelens(loaded: LoadedCoder, out: str | Path) -> Path:
    """Write ``loaded`` in SAELens' folder layout (``cfg.json`` + ``sae_weights.safetensors``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / CFG).unlink(missing_ok=True)
    coder, meta = loaded.coder, loaded.meta
    arch, tensors, extra = coder.saelens_state()
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_tensors(out / SAELENS_WEIGHTS, tensors)
    atomic_write_json(out / CFG, _saelens_cfg(coder, meta, arch, extra))
    return out


def _saelens_cfg(coder: SparseCoder, meta: CoderMeta, arch: str, extra: dict) -> dict:
    model = meta.model or {}
    metadata: dict[str, Any] = {
        "sae_lens_version": SAELENS_FORMAT_VERSION,
        "sae_lens_training_version": None,
        "model_name": model.get("model"),
        "hook_name": site_to_hook(meta.site),
        "hook_head_index": None,
        "prepend_bos": True,
        "context_size": meta.training.get("seq_len"),
        "dataset_path": meta.training.get("corpus"),
        "alignlab": {"site": meta.site, "site_out": meta.site_out, "architecture": coder.arch,
                     "model": model, "version": __version__},
    }
    cfg: dict[str, Any] = {
        "architecture": arch,
        "d_in": coder.cfg.d_in,
        "d_sae": coder.width,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": not coder.cfg.transcoder,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": metadata,
        **extra,
    }
    if arch == "topk":
        cfg["k"] = coder.cfg.k
        cfg["rescale_acts_by_decoder_norm"] = False
    if coder.cfg.transcoder:
        cfg["d_out"] = coder.cfg.out_dim
        metadata["hook_name_out"] = site_to_hook(meta.site_out)
    return cfg


_FROM_SAELENS = {
    "standard": ("relu_l1", False), "topk": ("topk", False), "jumprelu": ("jumprelu", False),
    "transcoder": ("relu_l1", True), "skip_transcoder": ("relu_l1", True),
    "jumprelu_transcoder": ("jumprelu", True), "jumprelu_skip_transcoder": ("jumprelu", True),
}


def import_saelens(folder: str | Path, site: str | None = None) -> LoadedCoder:
    """Read a SAELens folder into an alignlab coder with the same outputs."""
    folder = Path(folder)
    cfg = _read_cfg(folder)
    arch_name = cfg.get("architecture", "standard")
    if arch_name not in _FROM_SAELENS:
        raise ArtifactError(
            f"{folder} holds a SAELens {arch_name!r} SAE; alignlab imports {', '.join(_FROM_SAELENS)}"
        )
    if cfg.get("normalize_activations", "none") not in ("none", None):
        raise ArtifactError(
            f"{folder} normalises activations at run time ({cfg['normalize_activations']!r}); "
            "fold the scaling into the weights in SAELens (fold_activation_norm_scaling_factor) first"
        )
    arch, transcoder = _FROM_SAELENS[arch_name]
    tensors = _read_tensors(folder / SAELENS_WEIGHTS)
    coder = _saelens_coder(cfg, arch, transcoder, tensors, folder)
    metadata = cfg.get("metadata") or {}
    ours = metadata.get("alignlab") or {}
    in_site = site or ours.get("site") or hook_to_site(metadata.get("hook_name") or cfg.get("hook_name"))
    out_site = ours.get("site_out") or hook_to_site(metadata.get("hook_name_out")) or in_site
    if in_site is None:
        raise ArtifactError(
            f"cannot tell which site {folder} reads (hook {metadata.get('hook_name')!r}); pass --site"
        )
    meta = CoderMeta(site=in_site, site_out=out_site if transcoder else in_site, model=ours.get("model"),
                     training={"imported_from": "saelens", "model_name": metadata.get("model_name")})
    return LoadedCoder(coder.eval(), meta, folder, "saelens")


def _saelens_coder(cfg: dict, arch: str, transcoder: bool, tensors: dict[str, Tensor], folder: Path) -> SparseCoder:
    try:
        d_in, width = int(cfg["d_in"]), int(cfg["d_sae"])
        d_out = int(cfg.get("d_out", d_in)) if transcoder else None
        k = int(cfg.get("k", 1)) if arch == "topk" else 1
        skip = transcoder and "W_skip" in tensors
        coder = build_coder(CoderConfig(arch, d_in, width, d_out=d_out, transcoder=transcoder,
                                        skip=skip, k=k), seed=None)
        tensors = {k_: v.float() for k_, v in tensors.items()}
        if not transcoder and not cfg.get("apply_b_dec_to_input", True):
            # alignlab SAEs encode x - b_dec; fold it back: b_enc' = b_enc + b_dec @ W_enc
            tensors["b_enc"] = tensors["b_enc"] + tensors["b_dec"] @ tensors["W_enc"]
        if arch == "topk" and cfg.get("rescale_acts_by_decoder_norm", False):
            _fold_decoder_norm(tensors)
        coder.load_saelens_tensors(tensors)
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{folder} is not a valid SAELens {cfg.get('architecture')!r} folder: {exc}") from exc
    return coder


def _fold_decoder_norm(tensors: dict[str, Tensor]) -> None:
    """SAELens TopK with rescale_acts_by_decoder_norm ranks z_i * ||W_dec,i||: make rows unit."""
    norms = tensors["W_dec"].norm(dim=1).clamp_min(1e-8)  # (d_sae,)
    tensors["W_enc"] = tensors["W_enc"] * norms  # (d_in, d_sae)
    tensors["b_enc"] = tensors["b_enc"] * norms
    tensors["W_dec"] = tensors["W_dec"] / norms[:, None]


# ----- sparsify ----------------------------------------------------------------------------

def sparsify_hookpoint_to_site(hookpoint: str, transcoder: bool) -> str | None:
    """``layers.6`` -> resid.7 (a block's output); ``layers.6.mlp`` -> mlp.6 (or mlp_in.6 as input)."""
    name = re.sub(r"^(?:model|gpt_neox|transformer|base_model)\.", "", hookpoint)
    match = re.fullmatch(r"(?:layers|h)\.(\d+)(?:\.(mlp|self_attn|attn|attention))?", name)
    if not match:
        return None
    i, part = int(match.group(1)), match.group(2)
    if part is None:
        return f"resid.{i + 1}"
    if part == "mlp":
        return f"mlp_in.{i}" if transcoder else f"mlp.{i}"
    return f"attn.{i}"


def import_sparsify(folder: str | Path, site: str | None = None) -> LoadedCoder:
    """Read a sparsify folder (``cfg.json`` + ``sae.safetensors``)."""
    folder = Path(folder)
    cfg = _read_cfg(folder)
    unsupported = [key for key in ("embed_skip", "gram_lookup", "multi_topk") if cfg.get(key)]
    if cfg.get("activation", "topk") != "topk":
        unsupported.append(f"activation={cfg['activation']}")
    transcoder = bool(cfg.get("transcode", False))
    skip = bool(cfg.get("skip_connection", False))
    if skip and not transcoder:
        unsupported.append("skip_connection on an autoencoder")
    if unsupported:
        raise ArtifactError(f"{folder} uses sparsify features alignlab does not import: {', '.join(unsupported)}")
    tensors = _read_tensors(folder / SPARSIFY_WEIGHTS)
    coder = _sparsify_coder(cfg, tensors, transcoder, skip, folder)
    in_site = site or sparsify_hookpoint_to_site(folder.name, transcoder)
    if in_site is None:
        raise ArtifactError(
            f"cannot tell which site the sparsify hookpoint {folder.name!r} is; pass --site"
        )
    out_site = in_site.replace("mlp_in.", "mlp.") if transcoder else in_site
    meta = CoderMeta(site=in_site, site_out=out_site, training={"imported_from": "sparsify",
                                                                "hookpoint": folder.name})
    return LoadedCoder(coder.eval(), meta, folder, "sparsify")


def _sparsify_coder(cfg: dict, tensors: dict[str, Tensor], transcoder: bool, skip: bool,
                    folder: Path) -> SparseCoder:
    try:
        d_in = int(cfg["d_in"])
        width = int(cfg.get("num_latents") or d_in * int(cfg.get("expansion_factor", 32)))
        d_out = int(tensors["b_dec"].shape[0])
        coder = build_coder(CoderConfig("topk", d_in, width, d_out=d_out if transcoder else None,
                                        transcoder=transcoder, skip=skip, k=int(cfg.get("k", 32))),
                            seed=None)
        with torch.no_grad():
            coder.W_enc.copy_(tensors["encoder.weight"].float())
            coder.b_enc.copy_(tensors["encoder.bias"].float())
            coder.W_dec.copy_(tensors["W_dec"].float())
            coder.b_dec.copy_(tensors["b_dec"].float())
            if skip:
                coder.W_skip.copy_(tensors["W_skip"].float())
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{folder} is not a valid sparsify folder: {exc}") from exc
    return coder
