"""Saving and loading tuned lenses: alignlab's folder, and the tuned-lens package's.

alignlab's folder is ``cfg.json`` (format, the model it was trained on: spec, revision, family,
sizes, sha256 of the unembedding; the weights file's sha256) and ``lens.safetensors``
(``weight`` (L, d, d), ``bias`` (L, d)). ``cfg.json`` is written last, so a folder without it
is unfinished; loading checks the model and refuses another one.

The tuned-lens package (EleutherAI, ``TunedLens.save``) writes ``config.json``
(``TunedLensConfig``: ``base_model_name_or_path``, ``d_model``, ``num_hidden_layers``,
``bias``, ``base_model_revision``, ``unembed_hash``, ``lens_type``) and ``params.pt``, the
``state_dict`` of its ``layer_translators`` ModuleList of ``nn.Linear(d, d)``: keys
``"{i}.weight"`` (d, d) and ``"{i}.bias"`` (d,). Its translators are residual
(``h + Linear(h)``), the same map as here, so import and export copy the numbers unchanged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from .. import __version__
from ..errors import ArtifactError
from ..models import LoadedModel
from ..runs import atomic_write_json, atomic_write_tensors, write_beside
from .tuned import TunedLens, model_info, peer_unembed_hash

FORMAT = "alignlab.tuned_lens"
FORMAT_VERSION = 1
CFG, WEIGHTS = "cfg.json", "lens.safetensors"
PEER_CONFIG, PEER_PARAMS = "config.json", "params.pt"
PEER_LENS_TYPE = "linear_tuned_lens"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary name, so nothing half-written remains."""
    path = Path(path)
    write_beside(path, lambda tmp: Path(tmp).write_bytes(data))
    return path


def _prepare_folder(folder: Path, marker: str) -> Path:
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ArtifactError(f"cannot save a lens to {str(folder)!r}: it is a file; give a folder path")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / marker).unlink(missing_ok=True)  # the folder is unfinished until it is rewritten
    return folder


def save_lens(lens: TunedLens, folder: str | Path, extra: dict | None = None) -> Path:
    """Write ``cfg.json`` + ``lens.safetensors``; ``extra`` (e.g. training settings) goes in cfg."""
    folder = _prepare_folder(Path(folder), CFG)
    weight, bias = lens.stacked()
    tensors = {"weight": weight.cpu().contiguous(), "bias": bias.cpu().contiguous()}
    atomic_write_tensors(folder / WEIGHTS, tensors, metadata={"format": FORMAT})
    cfg = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "alignlab_version": __version__,
        "n_layers": lens.n_layers,
        "d_model": lens.d_model,
        "model": lens.model_info,
        "weights": {"file": WEIGHTS, "sha256": _file_sha256(folder / WEIGHTS)},
        **({"extra": extra} if extra else {}),
    }
    atomic_write_json(folder / CFG, cfg)
    return folder


def read_lens(folder: str | Path, lm: LoadedModel, check_model: bool = True) -> TunedLens:
    """Load either layout from ``folder``: alignlab's (``cfg.json``) or the tuned-lens package's."""
    folder = Path(folder)
    if (folder / CFG).is_file():
        return load_lens(folder, lm, check_model)
    if (folder / PEER_CONFIG).is_file() and (folder / PEER_PARAMS).is_file():
        return import_tuned_lens(folder, lm, check_model)
    return load_lens(folder, lm, check_model)  # raises, saying what is missing


def load_lens(folder: str | Path, lm: LoadedModel, check_model: bool = True) -> TunedLens:
    """Load a lens saved by :func:`save_lens`; refuse it if it was trained on another model."""
    folder = Path(folder)
    cfg = _read_cfg(folder)
    info = cfg.get("model") or {}
    if check_model:
        _check_same_model(folder, info, lm)
    weights = folder / cfg["weights"]["file"]
    if not weights.is_file() or _file_sha256(weights) != cfg["weights"]["sha256"]:
        raise ArtifactError(
            f"lens weights {str(weights)!r} are missing or do not match the sha256 in "
            f"{CFG}; the folder is damaged or was changed by hand: train or save the lens again"
        )
    tensors = load_file(weights)
    lens = TunedLens(cfg["n_layers"], cfg["d_model"], info)
    _copy_checked(lens, tensors.get("weight"), tensors.get("bias"), folder)
    return lens.to(lm.device)


def _read_cfg(folder: Path) -> dict:
    path = folder / CFG
    if not folder.is_dir():
        raise ArtifactError(f"lens folder {str(folder)!r} does not exist; give the folder "
                            f"`alignlab lens train` wrote (RUN/lens)")
    if not path.is_file():
        found = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        raise ArtifactError(
            f"{str(folder)!r} has no {CFG} (found: {found}); it is not a finished alignlab "
            f"lens, nor a tuned-lens package lens ({PEER_CONFIG} + {PEER_PARAMS})"
        )
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{str(path)!r} is not valid JSON ({exc}); save the lens again") from exc
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise ArtifactError(f"{str(path)!r} is not an alignlab tuned lens (format "
                            f"{cfg.get('format') if isinstance(cfg, dict) else None!r}, expected {FORMAT!r})")
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{str(path)!r} has lens format version {cfg.get('format_version')!r}; this alignlab "
            f"reads version {FORMAT_VERSION}: upgrade alignlab or train the lens again"
        )
    for key in ("n_layers", "d_model", "weights"):
        if key not in cfg:
            raise ArtifactError(f"{str(path)!r} lacks {key!r}; the file is damaged: save the lens again")
    return cfg


def _describe_model(info: dict) -> str:
    rev = f" revision {info.get('revision')!r}" if info.get("revision") else ""
    digest = str(info.get("unembedding_hash") or "?")[:12]
    return (f"{info.get('model')!r}{rev} ({info.get('n_layers')} layers, d_model "
            f"{info.get('d_model')}, unembedding sha256 {digest}...)")


def _check_same_model(folder: Path, info: dict, lm: LoadedModel) -> None:
    here = lm.describe()
    same = all(info.get(k) == here[k] for k in ("n_layers", "d_model", "d_vocab", "unembedding_hash"))
    if not same:
        raise ArtifactError(
            f"the lens in {str(folder)!r} was trained on {_describe_model(info)}, but the loaded "
            f"model is {_describe_model(here)}; load the model it was trained on, or train a "
            f"lens for this one with `alignlab lens train --model {lm.spec}`"
        )


def _copy_checked(lens: TunedLens, weight, bias, source: Path) -> None:
    want_w = (lens.n_layers, lens.d_model, lens.d_model)
    want_b = (lens.n_layers, lens.d_model)
    if weight is None or bias is None or tuple(weight.shape) != want_w or tuple(bias.shape) != want_b:
        got = None if weight is None else tuple(weight.shape)
        raise ArtifactError(
            f"lens weights in {str(source)!r} have the wrong shape (weight {got}, expected "
            f"{want_w} and bias {want_b}); the files are damaged or from another model"
        )
    lens.load_stacked(weight, bias)


def import_tuned_lens(folder: str | Path, lm: LoadedModel, check_model: bool = True) -> TunedLens:
    """Load a lens saved by the tuned-lens package (``config.json`` + ``params.pt``).

    ``params.pt`` is read with ``torch.load(weights_only=True)``, which unpickles tensors and
    plain containers only, so a lens file cannot run code.
    """
    folder = Path(folder)
    config = _read_peer_config(folder)
    n_layers, d_model = config["num_hidden_layers"], config["d_model"]
    if (n_layers, d_model) != (lm.n_layers, lm.d_model) or (
        check_model and config.get("unembed_hash") not in (None, peer_unembed_hash(lm))
    ):
        raise ArtifactError(
            f"the tuned-lens package lens in {str(folder)!r} was trained on "
            f"{config.get('base_model_name_or_path')!r} ({n_layers} layers, d_model {d_model}, "
            f"unembed_hash {str(config.get('unembed_hash'))[:12]}...), but the loaded model is "
            f"{lm.spec!r} ({lm.n_layers} layers, d_model {lm.d_model}, unembed_hash "
            f"{peer_unembed_hash(lm)[:12]}...); load the model it was trained on"
        )
    state = _read_peer_params(folder / PEER_PARAMS)
    weight, bias = _stack_peer_state(state, n_layers, d_model, bool(config.get("bias", True)), folder)
    lens = TunedLens(n_layers, d_model, {**model_info(lm), "imported_from": {
        "format": "tuned-lens", "path": str(folder),
        "base_model_name_or_path": config.get("base_model_name_or_path"),
        "base_model_revision": config.get("base_model_revision")}})
    _copy_checked(lens, weight, bias, folder)
    return lens.to(lm.device)


def _read_peer_config(folder: Path) -> dict:
    path = folder / PEER_CONFIG
    if not path.is_file() or not (folder / PEER_PARAMS).is_file():
        raise ArtifactError(f"{str(folder)!r} is not a tuned-lens package lens: it needs "
                            f"{PEER_CONFIG} and {PEER_PARAMS}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{str(path)!r} is not valid JSON ({exc})") from exc
    missing = [k for k in ("d_model", "num_hidden_layers") if not isinstance(config.get(k), int)]
    if missing:
        raise ArtifactError(f"{str(path)!r} lacks integer {', '.join(missing)}; it is not a "
                            f"tuned-lens TunedLensConfig")
    if config.get("lens_type", PEER_LENS_TYPE) != PEER_LENS_TYPE:
        raise ArtifactError(f"{str(path)!r} has lens_type {config['lens_type']!r}; only "
                            f"{PEER_LENS_TYPE!r} lenses can be imported")
    return config


def _read_peer_params(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ArtifactError(f"could not read {str(path)!r} as tensors only "
                            f"(weights_only=True): {first}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(f"{str(path)!r} does not hold a state dict of tensors")
    return state


def _stack_peer_state(state: dict, n_layers: int, d_model: int, bias: bool, folder: Path):
    want = {f"{i}.weight" for i in range(n_layers)} | ({f"{i}.bias" for i in range(n_layers)} if bias else set())
    if set(state) != want:
        extra, missing = sorted(set(state) - want)[:3], sorted(want - set(state))[:3]
        raise ArtifactError(
            f"{PEER_PARAMS} in {str(folder)!r} does not match its config ({n_layers} translators"
            f"{' with' if bias else ' without'} bias): missing {missing}, unexpected {extra}"
        )
    weight = torch.stack([state[f"{i}.weight"].float() for i in range(n_layers)])
    if bias:
        return weight, torch.stack([state[f"{i}.bias"].float() for i in range(n_layers)])
    return weight, torch.zeros(n_layers, d_model)


def export_tuned_lens(lens: TunedLens, folder: str | Path) -> Path:
    """Write ``lens`` in the tuned-lens package's layout, loadable by ``TunedLens.from_model_and_pretrained``."""
    folder = _prepare_folder(Path(folder), PEER_CONFIG)
    info = lens.model_info
    # the same keys as the package's ``layer_translators.state_dict()``
    state = {k: v.detach().cpu().clone() for k, v in lens.translators.state_dict().items()}
    write_beside(folder / PEER_PARAMS, lambda tmp: torch.save(state, tmp))
    config = {
        "base_model_name_or_path": info.get("model"),
        "d_model": lens.d_model,
        "num_hidden_layers": lens.n_layers,
        "bias": True,
        "base_model_revision": info.get("revision"),
        "unembed_hash": info.get("tuned_lens_unembed_hash"),
        "lens_type": PEER_LENS_TYPE,
    }
    atomic_write_json(folder / PEER_CONFIG, config)
    return folder
