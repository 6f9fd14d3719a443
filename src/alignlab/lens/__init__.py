"""Lenses across depth: the logit lens, the tuned lens, per-layer metrics and pictures."""

from .batches import ModelRows, ResidRows, StoreRows, rows_from_tokens
from .io import export_tuned_lens, import_tuned_lens, load_lens, read_lens, save_lens
from .logit import Lens, LogitLens, lens_logits, unembed
from .metrics import LensEvaluation, LensMetrics, evaluate_lenses
from .train import TrainResult, TrainSettings, train_tuned_lens
from .tuned import TunedLens

__all__ = [
    "Lens",
    "LensEvaluation",
    "LensMetrics",
    "LogitLens",
    "ModelRows",
    "ResidRows",
    "StoreRows",
    "TrainResult",
    "TrainSettings",
    "TunedLens",
    "evaluate_lenses",
    "export_tuned_lens",
    "import_tuned_lens",
    "lens_logits",
    "load_lens",
    "read_lens",
    "rows_from_tokens",
    "save_lens",
    "train_tuned_lens",
    "unembed",
]
