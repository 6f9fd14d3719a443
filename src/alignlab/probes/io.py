"""Probe artifacts: ``cfg.json`` + ``probe.safetensors``, written atomically, checked on load.

The folder records the method, the layers, the layer chosen on validation, the normalisation
and calibration (inside the tensors), the dataset, and the model it was fitted on (spec,
revision, width and a hash of the unembedding), so a probe refuses to load onto another model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import ArtifactError
from ..models.loader import LoadedModel
from ..runs import atomic_write_json, atomic_write_tensors, read_tensors
from .fit import FittedProbe
from .methods import METHODS, ProbeInputs

FORMAT_VERSION = 1
CFG = "cfg.json"
WEIGHTS = "probe.safetensors"
TEST_STATES = "test_states.safetensors"  # per dataset folder, written for `alignlab across`


def save_probe(probe: FittedProbe, folder: str | Path, model: dict, dataset: str) -> Path:
    """Write ``folder/cfg.json`` and ``folder/probe.safetensors``; the config goes last."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CFG).unlink(missing_ok=True)  # the folder reads as incomplete until cfg.json lands
    atomic_write_tensors(folder / WEIGHTS, probe.state)
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
    missing = [k for k in ("method", "layers", "best_layer", "model") if k not in cfg]
    if missing:
        raise ArtifactError(f"{cfg_path} lacks {', '.join(missing)}; the folder is damaged: fit the probe again")
    if cfg["method"] not in METHODS:
        raise ArtifactError(f"{cfg_path} names method {cfg['method']!r}; known methods are {', '.join(METHODS)}")
    if lm is not None:
        check_model(cfg["model"], lm, folder)
    state = read_tensors(weights, "the probe folder is damaged: fit the probe again")
    needed = {"calib_a", "calib_b"} - set(state)
    if needed:
        raise ArtifactError(f"{weights} lacks {', '.join(sorted(needed))}; fit the probe again")
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


def save_test_states(inputs: ProbeInputs, folder: str | Path) -> Path:
    """A dataset's test rows (states, labels, contrast pairs) as ``folder/test_states.safetensors``:
    what ``alignlab across`` applies the previous checkpoint's probe to."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"x": inputs.x, "y": inputs.y}
    if inputs.has_pairs:
        tensors.update(x_pos=inputs.x_pos, x_neg=inputs.x_neg)
    path = folder / TEST_STATES
    atomic_write_tensors(path, tensors)
    return path


def load_test_states(folder: str | Path) -> ProbeInputs:
    path = Path(folder) / TEST_STATES
    remedy = "run `alignlab probe` with --save-test-states again (`alignlab across` sets it)"
    t = {k: v.to(torch.float32) for k, v in read_tensors(path, remedy).items()}
    if "x" not in t or "y" not in t or t["x"].ndim != 3 or t["y"].shape != t["x"].shape[1:2]:
        raise ArtifactError(f"{path} does not hold states x (L, N, d) and labels y (N,); {remedy}")
    return ProbeInputs(t["x"], t["y"], t.get("x_pos"), t.get("x_neg"))
