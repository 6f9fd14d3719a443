"""Truth probes on hidden states: does the model represent whether a statement is true?

Datasets (:mod:`.datasets`, built-ins in :mod:`.builtin`), last-token capture
(:mod:`.features`), methods fitted on every layer at once (:mod:`.methods`), calibration and
layer choice on train/validation (:mod:`.fit`), evaluation with bootstrap intervals
(:mod:`.evaluate`, :mod:`.metrics`), controls (:mod:`.controls`), the causal check
(:mod:`.causal`), drift across checkpoints (:mod:`.across`) and artifacts (:mod:`.io`).
:func:`run_probes` runs them all on a loaded model.
"""

from .across import cross_accuracy, direction_cosine, drift
from .datasets import StatementDataset, builtin_names, load_dataset, read_csv
from .fit import FittedProbe, fit_probe
from .io import load_probe, save_probe
from .methods import METHODS, MethodSettings, ProbeInputs
from .run import ProbeConfig, ProbeResults, run_probes

__all__ = [
    "METHODS", "FittedProbe", "MethodSettings", "ProbeConfig", "ProbeInputs", "ProbeResults",
    "StatementDataset", "builtin_names", "cross_accuracy", "demo_section", "direction_cosine", "drift",
    "fit_probe", "load_dataset", "load_probe", "read_csv", "run_probes", "save_probe",
]


def demo_section(ctx) -> dict:
    """The demo's probe section (``alignlab demo``); see :mod:`alignlab.probes.demo`."""
    from .demo import demo_section as section

    return section(ctx)
