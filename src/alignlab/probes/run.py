"""``run_probes(lm, config)``: datasets -> hidden states -> every method -> evaluation, baseline,
controls, causal check and transfer, as one :class:`ProbeResults` (and ``metrics.json`` keys).

``alignlab probe`` and the demo call this; ``alignlab across`` calls it once per checkpoint and
compares the returned probes with :mod:`alignlab.probes.across`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import opt
from ..errors import ConfigError, DataError
from ..models import EMBEDDED_DEFAULT
from ..models.loader import LoadedModel
from . import controls as ctl
from .causal import causal_check
from .datasets import ZERO_SHOT_ANSWERS, ZERO_SHOT_PROMPT, builtin_names, load_dataset
from .evaluate import Evaluation, evaluate_probe, evaluate_scores
from .features import answer_probability
from .fit import FittedProbe, fit_probe
from .methods import METHODS, MethodSettings, ProbeInputs, get_method
from .metrics import accuracy, auroc
from .prepare import PAIR_KINDS, DatasetFeatures, prepare_features

DEFAULT_METHODS = "lr,mean-diff,lda,ccs,eigen,random"
ALL_BUILTIN = "builtin"  # --dataset value that means every built-in dataset
RESERVED_NAMES = {"model", "layers", "datasets", "methods", "transfer", "controls", "timings"}


@dataclass
class ProbeConfig:
    """``alignlab probe``: truth probes on hidden states, supervised and unsupervised, with controls."""

    dataset: list[str] = opt(factory=lambda: ["cities"], help="built-in dataset name or CSV path "
                             "(at least statement,label); repeat for several (transfer matrix); "
                             f"'{ALL_BUILTIN}' for every built-in dataset")
    model: str = opt(EMBEDDED_DEFAULT, "built-in name, hub id, local folder or .gguf file")
    revision: str | None = opt(None, "hub revision, or checkpoint subfolder of a local folder")
    dtype: str = opt("float32", "model dtype", choices=["float32", "bfloat16", "float16"])
    methods: str = opt(DEFAULT_METHODS, "comma-separated probe methods")
    templates: str = opt("0", "template ids the probes are fitted on ('all' for every one); test "
                         "rows of the others are the held-out-template control")
    pairs: str = opt("auto", "contrast pairs for ccs/eigen: auto (negations when the dataset has "
                     "them, else Burns-style Yes/No), negation, burns, none", choices=list(PAIR_KINDS))
    held_out: str = opt("others", "templates whose test rows check unseen wordings (a control): "
                        "'others' (every template not fitted on) or a comma list")
    layers: str = opt("all", "resid layers to probe: 'all', a range '10-20' or a list '5,10,15'")
    controls: bool = opt(True, "run the controls (shuffled labels, random directions, distractor, "
                         "held-out templates, likelihood)")
    baseline: bool = opt(True, "the model's own zero-shot True/False answer on the test rows")
    causal: bool = opt(True, "steer along the probe direction and report the change in P(True)")
    causal_methods: str = opt("lr,mean-diff", "methods whose direction the causal check steers along")
    causal_statements: int = opt(100, "test statements the causal check runs on")
    causal_scale: float = opt(3.0, "steering size, in true-minus-false mean distances along the direction")
    bootstrap: int = opt(1000, "bootstrap draws for the 95%% intervals")
    random_directions: int = opt(100, "random directions per layer in the random-direction control")
    ccs_tries: int = opt(10, "CCS restarts per layer (lowest loss kept)")
    ccs_epochs: int = opt(1000, "CCS full-batch AdamW epochs per restart")
    ccs_lr: float = opt(1e-3, "CCS AdamW learning rate (Burns et al.: 1e-3)")
    seed: int = opt(0, "seed for restarts, random directions, bootstrap and the controls")
    batch_size: int = opt(64, "texts per forward pass")
    save_probes: bool = opt(True, "write each fitted probe to RUN/probes/<dataset>/<method>/")
    save_test_states: bool = opt(False, "also write each dataset's test rows (every layer's states) to "
                                 "RUN/probes/<dataset>/test_states.safetensors; `alignlab across` "
                                 "sets it to apply each checkpoint's probe to the next one's states")
    out: str | None = opt(None, "run folder (config.json, metrics.json, probes, report.html)")

    def __post_init__(self) -> None:
        if isinstance(self.dataset, str):
            self.dataset = [self.dataset]
        if not self.dataset or any(not d.strip() for d in self.dataset):
            raise ConfigError("--dataset must name a built-in dataset or a CSV file")
        if len(set(self.dataset_specs())) != len(self.dataset_specs()):
            raise ConfigError(f"--dataset names a dataset twice: {', '.join(self.dataset)}")
        self.method_list()
        self.template_ids()
        self.held_out_ids()
        self.layer_ids(10**6)
        get_method_names(self.causal_methods, "--causal-methods")
        for name, value, low in (("--bootstrap", self.bootstrap, 10), ("--random-directions", self.random_directions, 1),
                                 ("--causal-statements", self.causal_statements, 1), ("--ccs-tries", self.ccs_tries, 1),
                                 ("--ccs-epochs", self.ccs_epochs, 1), ("--batch-size", self.batch_size, 1)):
            if value < low:
                raise ConfigError(f"{name} must be at least {low}, got {value}")
        if self.pairs not in PAIR_KINDS:
            raise ConfigError(f"--pairs must be one of {', '.join(PAIR_KINDS)}, got {self.pairs!r}")
        if not 0 < self.ccs_lr < 1:
            raise ConfigError(f"--ccs-lr must be in (0, 1), got {self.ccs_lr}")
        if self.pairs == "none" and all(get_method(m).uses_pairs for m in self.method_list()):
            raise ConfigError(f"--methods {self.methods} all need contrast pairs and --pairs none builds "
                              "none; use --pairs auto (or negation, burns) or add lr, mean-diff, lda")

    def dataset_specs(self) -> list[str]:
        """The datasets to probe, with ``builtin`` expanded to every built-in name."""
        out: list[str] = []
        for spec in self.dataset:
            out.extend(builtin_names() if spec.strip() == ALL_BUILTIN else [spec])
        return out

    def method_list(self) -> list[str]:
        return get_method_names(self.methods, "--methods")

    def template_ids(self) -> list[int] | None:
        if self.templates.strip() == "all":
            return None
        try:
            ids = sorted({int(t) for t in self.templates.split(",") if t.strip()})
        except ValueError as exc:
            raise ConfigError(f"--templates must be 'all' or comma-separated integers, got {self.templates!r}") from exc
        if not ids:
            raise ConfigError("--templates names no template; give e.g. 0 or 'all'")
        return ids

    def held_out_ids(self) -> list[int] | None:
        """None: every template not fitted on."""
        if self.held_out.strip() == "others":
            return None
        try:
            return sorted({int(t) for t in self.held_out.split(",") if t.strip()})
        except ValueError as exc:
            raise ConfigError(f"--held-out must be 'others' or comma-separated integers, got {self.held_out!r}") from exc

    def layer_ids(self, n_layers: int) -> list[int]:
        """resid layers 0..n_layers selected by ``layers``."""
        text = self.layers.strip()
        if text == "all":
            return list(range(n_layers + 1))
        span = re.fullmatch(r"(\d+)-(\d+)", text)
        try:
            chosen = (list(range(int(span.group(1)), int(span.group(2)) + 1)) if span
                      else sorted({int(t) for t in text.split(",") if t.strip()}))
        except ValueError as exc:
            raise ConfigError(f"--layers must be 'all', 'A-B' or a comma list, got {self.layers!r}") from exc
        bad = [x for x in chosen if not 0 <= x <= n_layers]
        if not chosen or bad:
            raise ConfigError(f"--layers {self.layers!r} is outside this model's resid.0..resid.{n_layers}")
        return chosen

    def settings(self) -> MethodSettings:
        return MethodSettings(seed=self.seed, ccs_tries=self.ccs_tries, ccs_epochs=self.ccs_epochs,
                              ccs_lr=self.ccs_lr)


def get_method_names(text: str, flag: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if not names or unknown:
        raise ConfigError(f"{flag} {text!r}: unknown {unknown or 'empty'}; methods are {', '.join(METHODS)}")
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------------


@dataclass
class DatasetResult:
    name: str
    summary: dict
    pair_kind: str | None
    probes: dict[str, FittedProbe] = field(default_factory=dict)
    evaluations: dict[str, Evaluation] = field(default_factory=dict)
    baseline: dict | None = None
    gap: dict[str, float | None] = field(default_factory=dict)
    controls: dict = field(default_factory=dict)
    causal: dict = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # method -> why it did not run

    def to_json(self) -> dict:
        out: dict = {name: {**ev.to_json(), "val_accuracy": _rl(self.probes[name].info["val_accuracy"]),
                            "fit_seconds": round(self.probes[name].info["fit_seconds"], 3)}
                     for name, ev in self.evaluations.items()}
        out["dataset"] = self.summary
        out["pairs"] = self.pair_kind
        if self.baseline is not None:
            out["lm_baseline"] = self.baseline
            out["gap_recovered"] = self.gap
        if self.causal:
            out["causal"] = self.causal
        if self.skipped:
            out["skipped"] = self.skipped
        return out


@dataclass
class ProbeResults:
    """Everything one run computed; ``to_metrics()`` is the ``metrics.json`` shape."""

    model: dict
    layers: list[int]
    methods: list[str]
    datasets: dict[str, DatasetResult]
    features: dict[str, DatasetFeatures]
    transfer: dict | None
    timings: dict

    def test_inputs(self, dataset: str) -> ProbeInputs:
        feats = self.features[dataset]
        return feats.inputs.take(feats.split_index("test"))

    def to_metrics(self) -> dict:
        probe: dict = {"model": self.model, "layers": self.layers, "methods": self.methods,
                       "datasets": list(self.datasets)}
        for name, result in self.datasets.items():
            probe[name] = result.to_json()
        probe["transfer"] = self.transfer
        probe["controls"] = {name: r.controls for name, r in self.datasets.items()}
        probe["timings"] = self.timings
        return {"probe": probe}


def _rl(values) -> list:
    return [None if v is None or v != v else round(float(v), 6) for v in values]


def run_probes(lm: LoadedModel, config: ProbeConfig, log: Callable[[str], None] | None = None) -> ProbeResults:
    """Run every part of the probe section on ``lm`` (already loaded)."""
    log = log or (lambda _msg: None)
    timings: dict[str, float] = {}
    layers = config.layer_ids(lm.n_layers)
    datasets = [load_dataset(spec) for spec in config.dataset_specs()]
    _check_names([d.name for d in datasets])
    start = time.perf_counter()
    log(f"probe: capturing hidden states for {', '.join(d.name for d in datasets)}")
    features = prepare_features(lm, datasets, config.template_ids(), config.pairs,
                                config.controls, layers, config.batch_size, config.held_out_ids())
    timings["capture_seconds"] = round(time.perf_counter() - start, 2)
    results = {}
    for ds in datasets:
        results[ds.name] = _run_dataset(lm, config, features[ds.name], layers, log, timings)
    transfer = transfer_matrix(results, features, config.method_list()) if len(datasets) > 1 else None
    return ProbeResults(lm.describe(), layers, config.method_list(), results, features, transfer, timings)


def _check_names(names: list[str]) -> None:
    clash = [n for n in names if n in RESERVED_NAMES]
    if clash:
        raise DataError(f"dataset name {clash[0]!r} is reserved in metrics.json; rename the CSV file")
    if len(set(names)) != len(names):
        raise DataError(f"datasets {names} repeat a name; give each dataset once (CSV names come from the file name)")


def _splits(feats: DatasetFeatures) -> ctl.Splits:
    idx = {s: feats.split_index(s) for s in ("train", "val", "test")}
    for s, i in idx.items():
        if i.numel() < 2:
            raise DataError(f"dataset {feats.name!r} has {i.numel()} {s} rows; each split needs rows")
    return ctl.Splits(*(feats.inputs.take(idx[s]) for s in ("train", "val", "test")))


def _run_dataset(lm: LoadedModel, config: ProbeConfig, feats: DatasetFeatures, layers: list[int],
                 log: Callable[[str], None], timings: dict) -> DatasetResult:
    splits = _splits(feats)
    test_index = feats.split_index("test")
    groups = feats.groups[test_index]
    result = DatasetResult(feats.name, _summary(feats, splits), feats.pair_kind)
    settings = config.settings()
    for method in config.method_list():
        if get_method(method).uses_pairs and not splits.train.has_pairs:
            result.skipped[method] = "needs contrast pairs (--pairs none was given)"
            continue
        log(f"probe: {feats.name}: fitting {method} on {len(layers)} layers")
        probe = fit_probe(method, splits.train, splits.val, layers, settings)
        result.probes[method] = probe
        result.evaluations[method] = evaluate_probe(probe, splits.test, groups, config.bootstrap, config.seed)
        timings[f"{feats.name}.{method}.fit_seconds"] = round(probe.info["fit_seconds"], 2)
    base_p = None
    if config.baseline:
        log(f"probe: {feats.name}: the model's own zero-shot answers")
        base_p = _zero_shot(lm, feats, test_index, config)
        result.baseline = _baseline_metrics(base_p, splits.test.y, groups, config)
        result.gap = gap_recovered(result.evaluations, result.baseline)
    if config.controls:
        log(f"probe: {feats.name}: controls")
        result.controls = run_controls(feats, splits, result, layers, config)
    if config.causal:
        log(f"probe: {feats.name}: causal check")
        result.causal = _causal(lm, feats, splits, result, test_index, base_p, config)
    return result


def _summary(feats: DatasetFeatures, splits: ctl.Splits) -> dict:
    """The whole table's counts and provenance, then the rows the probes saw."""
    return {**feats.dataset.summary(), "probe_polarity": feats.dataset.probe_polarity,
            "probe_templates": feats.rows.template_ids(), "probe_rows": feats.inputs.n,
            "probe_splits": {"train": splits.train.n, "val": splits.val.n, "test": splits.test.n},
            "probe_true_fraction": round(float(feats.inputs.y.mean()), 6)}


def _zero_shot(lm: LoadedModel, feats: DatasetFeatures, test_index: torch.Tensor, config: ProbeConfig) -> torch.Tensor:
    statements = [feats.rows.statements[i] for i in test_index.tolist()]
    prompts = [ZERO_SHOT_PROMPT.format(statement=s) for s in statements]
    return answer_probability(lm, prompts, ZERO_SHOT_ANSWERS, config.batch_size)


def _baseline_metrics(p_true: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, config: ProbeConfig) -> dict:
    logit = (torch.log(p_true.clamp_min(1e-9)) - torch.log1p(-p_true.clamp_max(1 - 1e-9)))[None]
    ev = evaluate_scores(logit, y, [-1], -1, groups, config.bootstrap, config.seed)
    out = ev.at_best()
    out.pop("layer")
    # a model can know yet be biased toward one answer: accuracy at the threshold that
    # labels as many rows true as there are true rows (elk's "calibrated accuracy")
    thresh = p_true.quantile(1 - y.mean())
    out["calibrated_accuracy"] = round(float(accuracy((p_true > thresh).float(), y)), 6)
    out["mean_p_true"] = round(float(p_true.mean()), 6)
    out["prompt"] = ZERO_SHOT_PROMPT
    out["answers"] = list(ZERO_SHOT_ANSWERS)
    return out


def gap_recovered(evaluations: dict[str, Evaluation], baseline: dict) -> dict[str, float | None]:
    """(method AUROC - LM AUROC) / (supervised ceiling AUROC - LM AUROC), at best layers.

    The ceiling is logistic regression when it ran, else the best supervised method.
    """
    supervised = [m for m in evaluations if get_method(m).uses_labels]
    if not supervised:
        return {}
    ceiling_method = "lr" if "lr" in evaluations else max(supervised, key=lambda m: evaluations[m].at_best()["auroc"] or 0)
    ceiling = evaluations[ceiling_method].at_best()["auroc"]
    lm_auc = baseline["auroc"]
    out: dict[str, float | None] = {"ceiling_method": ceiling_method}
    for m, ev in evaluations.items():
        auc = ev.at_best()["auroc"]
        if None in (auc, ceiling, lm_auc) or ceiling - lm_auc <= 1e-9:
            out[m] = None
        else:
            out[m] = round((auc - lm_auc) / (ceiling - lm_auc), 6)
    return out


def run_controls(feats: DatasetFeatures, splits: ctl.Splits, result: DatasetResult, layers: list[int],
                 config: ProbeConfig) -> dict:
    """Every control, keyed as in ``probe.controls.<dataset>``."""
    settings = config.settings()
    test_logprob = feats.logprob[feats.split_index("test")]
    return {
        "shuffled_labels": {m: ctl.shuffled_labels(m, splits, layers, settings, config.seed)
                            for m in result.probes if get_method(m).uses_labels},
        "random_directions": _random_control(splits, result, config),
        "distractor": {m: _distractor_control(m, splits, layers, settings, config.seed)
                       for m in result.probes if get_method(m).uses_pairs and not get_method(m).uses_labels},
        "held_out_templates": _held_out_control(feats, splits, result, config),
        "likelihood": {m: ctl.likelihood_control(p.logits(splits.test)[p.best_index], test_logprob, splits.test.y)
                       for m, p in result.probes.items()},
    }


def _random_control(splits: ctl.Splits, result: DatasetResult, config: ProbeConfig) -> dict:
    aucs = ctl.random_direction_aurocs(splits.train, splits.test, config.random_directions, config.seed)
    summary = ctl.random_directions_summary(aucs)
    p95 = aucs.quantile(0.95, dim=0)
    summary["above_p95_at_best_layer"] = {
        m: bool(ev.auroc.estimate[ev.best_index] > p95[ev.best_index]) for m, ev in result.evaluations.items()}
    return summary


def _distractor_control(method: str, splits: ctl.Splits, layers: list[int], settings: MethodSettings,
                        seed: int) -> dict:
    checks: dict = {f"ratio_{r:g}": ctl.distractor_check(method, splits, layers, settings, r, seed)
                    for r in ctl.DISTRACTOR_RATIOS}
    runs = list(checks.values())
    checks["finds_truth_when_distractor_weaker"] = all(not c["flagged"] for c in runs if c["ratio"] < 1)
    checks["flagged_when_distractor_stronger"] = all(c["flagged"] for c in runs if c["ratio"] > 1)
    return checks


def _held_out_control(feats: DatasetFeatures, splits: ctl.Splits, result: DatasetResult,
                      config: ProbeConfig) -> dict:
    if feats.held_out is None:
        return {"skipped": "every template was fitted on, or the dataset has one"}
    held, trained = feats.held_out, config.template_ids() or []
    return {m: ctl.held_out_templates(p, splits.test, held.inputs, trained, held.templates)
            for m, p in result.probes.items() if held.inputs.has_pairs or not get_method(m).uses_pairs}


def _causal(lm: LoadedModel, feats: DatasetFeatures, splits: ctl.Splits, result: DatasetResult,
            test_index: torch.Tensor, base_p: torch.Tensor | None, config: ProbeConfig) -> dict:
    n = min(config.causal_statements, test_index.numel())
    pick = torch.randperm(test_index.numel(), generator=torch.Generator().manual_seed(config.seed + 6))[:n]
    statements = [feats.rows.statements[i] for i in test_index[pick].tolist()]
    labels = splits.test.y[pick]
    base = None if base_p is None else base_p[pick]
    out = {}
    for m in get_method_names(config.causal_methods, "--causal-methods"):
        if m in result.probes:
            out[m] = causal_check(lm, result.probes[m], statements, labels, splits.train,
                                  config.causal_scale, config.batch_size, base)
    return out


def transfer_matrix(results: dict[str, DatasetResult], features: dict[str, DatasetFeatures],
                    methods: list[str]) -> dict:
    """Train on A (its probe at its validation-chosen layer), test on B's test rows."""
    names = list(results)
    tests = {n: features[n].inputs.take(features[n].split_index("test")) for n in names}
    out = {"datasets": names, "methods": {}}
    for m in methods:
        if not all(m in results[n].probes for n in names):
            continue
        acc = np.full((len(names), len(names)), np.nan)
        auc = np.full((len(names), len(names)), np.nan)
        for i, a in enumerate(names):
            probe = results[a].probes[m]
            for j, b in enumerate(names):
                logits = probe.logits(tests[b])[probe.best_index]
                acc[i, j] = float(accuracy((logits > 0).float(), tests[b].y))
                auc[i, j] = float(auroc(logits, tests[b].y))
        out["methods"][m] = {"accuracy": _matrix(acc), "auroc": _matrix(auc),
                             "layers": [results[a].probes[m].best_layer for a in names]}
    return out


def _matrix(a: np.ndarray) -> list[list[float | None]]:
    return [[None if v != v else round(float(v), 6) for v in row] for row in a]


# ---------------------------------------------------------------------------------------------
# The run folder: `alignlab probe --out RUN`


def probe_run(config: ProbeConfig, log: Callable[[str], None] | None = None):
    """Load the model, run every part, write probes and ``metrics.json`` (+ report) to ``out``.

    Returns ``(results, run)``; ``run`` is None without ``out``.
    """
    from ..config import config_to_dict
    from ..models import load_model
    from ..runs import ensure_writable_dir, start_run
    from . import report  # noqa: F401  (registers the report section)
    from .io import save_probe, save_test_states

    log = log or (lambda _msg: None)
    if config.out:
        ensure_writable_dir(config.out)  # fail before the slow model load
    for spec in config.dataset_specs():
        load_dataset(spec)  # a bad dataset name fails before the model load too
    lm = load_model(config.model, revision=config.revision, dtype=config.dtype)
    run = start_run(config.out, "probe", config_to_dict(config)) if config.out else None
    results = run_probes(lm, config, log)
    if run is None:
        return results, None
    if config.save_probes:
        for name, result in results.datasets.items():
            for method, probe in result.probes.items():
                save_probe(probe, run.path / "probes" / name / method, results.model, name)
    if config.save_test_states:
        for name in results.datasets:
            save_test_states(results.test_inputs(name), run.path / "probes" / name)
    metrics = results.to_metrics()
    finish = getattr(run, "finish", None)
    (finish or run.write_metrics)(metrics)
    return results, run
