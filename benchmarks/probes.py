"""Probe fitting speed: every method on all layers at once vs a per-layer scikit-learn loop.

The features are the last-token states of the built-in city dataset (1,000 statements, every
resid layer of the model). Two comparisons, measured in this one run:

1. 5-fold cross-validation (folds by city) of logistic regression on every layer:
   ``alignlab``'s batched Newton solve (all layers at once, the same objective as sklearn's
   ``LogisticRegression(C=1)`` on standardised features) vs a Python loop over layers and folds
   of sklearn's ``LogisticRegression()`` (its defaults, on the raw states) and of
   ``StandardScaler + LogisticRegression``. Prints the times, the ratios and the per-layer
   accuracies side by side.
2. The time of each method's full all-layer fit as ``alignlab probe`` runs it (train split,
   hyperparameters and layer chosen on validation).

    .venv/bin/python benchmarks/probes.py [--model smollm2-135m] [--features cache.pt]

scikit-learn is needed here only (``pip install scikit-learn``); the library never imports it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch


def features(model: str, cache: Path | None):
    from alignlab.models import load_model
    from alignlab.probes.datasets import load_dataset
    from alignlab.probes.prepare import group_codes, prepare_features

    if cache is not None and cache.is_file():  # states may be stored in float16 to travel light
        return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
                for k, v in torch.load(cache).items()}
    lm = load_model(model)
    ds = load_dataset("cities")
    start = time.perf_counter()
    feats = prepare_features(lm, [ds], [0], pairs="negation", held_out=False)["cities"]
    print(f"captured {feats.inputs.n} statements + negations on {feats.inputs.n_layers} layers "
          f"in {time.perf_counter() - start:.1f}s")
    data = {"x": feats.inputs.x, "x_neg": feats.inputs.x_neg, "y": feats.inputs.y,
            "groups": group_codes(feats.rows), "split": feats.rows.columns["split"]}
    if cache is not None:
        torch.save(data, cache)
    return data


def folds_by_group(groups: torch.Tensor, k: int = 5, seed: int = 0) -> torch.Tensor:
    unique = torch.unique(groups)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(unique)))
    fold_of_group = torch.empty(len(unique), dtype=torch.long)
    fold_of_group[order] = torch.arange(len(unique)) % k
    return fold_of_group[torch.searchsorted(unique, groups)]


def ours_cv(x: torch.Tensor, y: torch.Tensor, folds: torch.Tensor) -> tuple[float, np.ndarray]:
    from alignlab.probes.methods.base import standardize_stats
    from alignlab.probes.methods.lr import design, newton_logistic

    start = time.perf_counter()
    accs = []
    for f in range(int(folds.max()) + 1):
        train, test = folds != f, folds == f
        mean, std = standardize_stats(x[:, train])
        lam = torch.full((x.shape[0],), 1.0 / int(train.sum()))  # sklearn C=1 in mean-loss form
        w = newton_logistic(design(x[:, train], mean, std), y[train], lam)
        logits = torch.einsum("lnd,ld->ln", design(x[:, test], mean, std), w)
        accs.append(((logits > 0).float() == y[test]).float().mean(1))
    return time.perf_counter() - start, torch.stack(accs).mean(0).numpy()


def sklearn_cv(x: torch.Tensor, y: torch.Tensor, folds: torch.Tensor, scaled: bool) -> tuple[float, np.ndarray]:
    """The per-layer loop: ``LogisticRegression()`` as is on the raw states (sklearn's defaults,
    which stop at 100 L-BFGS iterations unconverged), or after ``StandardScaler`` with room to
    converge."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    xs, ys, fs = x.numpy(), y.numpy(), folds.numpy()
    start = time.perf_counter()
    out = np.zeros(xs.shape[0])
    # sklearn's BLAS gets the threads torch has, so neither side runs on more cores
    with warnings.catch_warnings(), threadpool_limits(limits=torch.get_num_threads()):
        warnings.simplefilter("ignore", ConvergenceWarning)
        for layer in range(xs.shape[0]):
            accs = []
            for f in range(int(fs.max()) + 1):
                train, test = fs != f, fs == f
                model = (make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)) if scaled
                         else LogisticRegression())
                model.fit(xs[layer, train], ys[train])
                accs.append(model.score(xs[layer, test], ys[test]))
            out[layer] = np.mean(accs)
    return time.perf_counter() - start, out


def every_method(data: dict) -> tuple[str, list[tuple]]:
    """Each method's all-layer fit as ``alignlab probe`` runs it: (header, rows of name, seconds,
    layer, test accuracy, test AUROC)."""
    from alignlab.probes.evaluate import evaluate_probe
    from alignlab.probes.fit import fit_probe
    from alignlab.probes.methods import METHODS, MethodSettings, ProbeInputs

    split = np.asarray(data["split"], dtype=object)
    inputs = ProbeInputs(data["x"], data["y"], data["x"], data["x_neg"])
    train, val, test = (inputs.take(torch.as_tensor(np.flatnonzero(split == s))) for s in ("train", "val", "test"))
    layers = list(range(inputs.n_layers))
    rows = []
    for name in METHODS:
        probe = fit_probe(name, train, val, layers, MethodSettings())
        ev = evaluate_probe(probe, test, n_bootstrap=200)
        i = probe.best_index
        rows.append((name, probe.info["fit_seconds"], probe.best_layer, float(ev.accuracy.estimate[i]),
                     float(ev.auroc.estimate[i])))
    header = (f"all-layer fits as `alignlab probe` runs them ({len(layers)} layers, {train.n} train / "
              f"{val.n} val / {test.n} test)")
    return header, rows


EQUAL = 0.005  # per-layer CV accuracy: 5 of 1,000 statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--features", type=Path, default=None, help="cache the captured features here")
    parser.add_argument("--sklearn", default="raw,scaled",
                        help="which sklearn loops to time: raw (LogisticRegression() as is), scaled, or both")
    parser.add_argument("--skip-methods", action="store_true", help="only the 5-fold LR comparison")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both sides (torch and sklearn's BLAS); default: torch's")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = features(args.model, args.features)
    x, y = data["x"], data["y"]
    folds = folds_by_group(data["groups"])
    ours_t, ours_acc = ours_cv(x, y, folds)
    # every alignlab fit first, then the (long) scikit-learn loops
    methods = None if args.skip_methods else every_method(data)
    loops = {v.strip() for v in args.sklearn.split(",")}
    nan = np.full(x.shape[0], np.nan)
    raw_t, raw_acc = sklearn_cv(x, y, folds, scaled=False) if "raw" in loops else (float("nan"), nan)
    scaled_t, scaled_acc = sklearn_cv(x, y, folds, scaled=True) if "scaled" in loops else (float("nan"), nan)
    print(f"5-fold LR on {x.shape[0]} layers x {x.shape[1]} statements (d={x.shape[2]}), "
          f"{torch.get_num_threads()} torch threads:")
    print(f"  alignlab, all layers per solve:            {ours_t:8.1f}s")
    print(f"  sklearn LogisticRegression() per layer:    {raw_t:8.1f}s  ({raw_t / ours_t:.1f}x ours)")
    print(f"  sklearn scaled + LogisticRegression:       {scaled_t:8.1f}s  ({scaled_t / ours_t:.1f}x ours)")
    print("  layer  alignlab  sklearn  sklearn-scaled")
    for layer, (a, b, c) in enumerate(zip(ours_acc, raw_acc, scaled_acc)):
        print(f"  {layer:5d}  {a:8.3f}  {b:7.3f}  {c:14.3f}")
    for name, acc in (("alignlab", ours_acc), ("sklearn", raw_acc), ("sklearn-scaled", scaled_acc)):
        if np.isnan(acc).all():
            continue
        print(f"  best layer {name}: {int(acc.argmax())} ({acc.max():.3f})")
    for name, t, acc in (("sklearn-scaled", scaled_t, scaled_acc), ("sklearn", raw_t, raw_acc)):
        if np.isnan(acc).all():
            continue
        gap = float(np.abs(ours_acc - acc).max())
        verdict = "equal" if gap <= EQUAL else "NOT equal"
        print(f"  vs {name}: {t / ours_t:.1f}x faster; max per-layer accuracy difference {gap:.4f}: {verdict} "
              f"(tolerance {EQUAL}; the raw default is unscaled and stops unconverged, so it may differ)")
    if methods is not None:
        loop_t, loop_name = (scaled_t, "sklearn-scaled") if not np.isnan(scaled_t) else (raw_t, "sklearn")
        header, rows = methods
        print(f"\n{header}, against the {loop_t:.1f}s {loop_name} loop:")
        for name, took, layer, acc, auc in rows:
            print(f"  {name:10s} {took:7.1f}s  ({loop_t / took:6.1f}x faster)  layer {layer:2d}  "
                  f"test accuracy {acc:.3f}  AUROC {auc:.3f}")


if __name__ == "__main__":
    main()
