"""Probe artifacts: ``cfg.json`` + ``probe.safetensors``, written atomically, checked on load.

The folder records the method, the layers, the layer chosen on validation, the normalisation
and calibration (inside the tensors), the dataset, and the model it was fitted on (spec,
revision, width and a hash of the unembedding), so a probe refuses to load onto another model.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import ArtifactError
from ..models.loader import LoadedModel
from ..runs import atomic_write_json
from .fit import FittedProbe
from .methods import METHODS

FORMAT_VERSION = 1
CFG = "cfg.json"
WEIGHTS = "probe.safetensors"


def save_probe(probe: FittedProbe, folder: str | Path, model: dict, dataset: str) -> Path:
    """Write ``folder/cfg.json`` and ``folder/probe.safetensors``; the config goes last."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CFG).unlink(missing_ok=True)  # the folder reads as incomplete until cfg.json lands
    fd, tmp = tempfile.mkstemp(prefix=f".{WEIGHTS}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in probe.state.items()}, tmp)
        os.replace(tmp, folder / WEIGHTS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_json(folder / CFG, {
        "format_version": FORMAT_VERSION, "kind": "alignlab.probe", "method": probe.method,
        "layers": probe.layers, "best_layer": probe.best_layer, "dataset": dataset,
        "model": model, "info": probe.info,
    })
    return folder


def load_probe(folder: str | Path, lm: LoadedModel | None = None) -> FittedProbe:
    """Read a probe folder; with ``lm``, refuse it unless it was fitted on that model."""
    folder = Path(folder)
    cfg_path, weights = folder / CFG, folder / WEIGHTS
    if not cfg_path.is_file() or not weights.is_file():
        raise ArtifactError(f"{folder} is not a probe folder (needs {CFG} and {WEIGHTS}); "
                            "give a folder that `alignlab probe` wrote under RUN/probes/")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{cfg_path} is not valid JSON ({exc}); fit the probe again") from exc
    if cfg.get("kind") != "alignlab.probe" or cfg.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{cfg_path} is not an alignlab probe of format {FORMAT_VERSION} "
                            f"(kind {cfg.get('kind')!r}, format {cfg.get('format_version')!r})")
    if cfg["method"] not in METHODS:
        raise ArtifactError(f"{cfg_path} names method {cfg['method']!r}; known methods are {', '.join(METHODS)}")
    if lm is not None:
        check_model(cfg["model"], lm, folder)
    state = load_file(str(weights))
    return FittedProbe(cfg["method"], {k: v.to(torch.float32) for k, v in state.items()},
                       list(cfg["layers"]), int(cfg["best_layer"]), cfg.get("info", {}))


def check_model(recorded: dict, lm: LoadedModel, folder: Path) -> None:
    here = lm.describe()
    for key in ("d_model", "unembedding_hash"):
        if recorded.get(key) != here[key]:
            raise ArtifactError(
                f"probe {folder} was fitted on {recorded.get('model')!r} ({key} {recorded.get(key)!r}), "
                f"not on {here['model']!r} ({key} {here[key]!r}); fit a probe on this model"
            )
