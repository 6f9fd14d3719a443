"""From datasets to tensors: every text a run needs is captured once, then assembled per dataset.

For each dataset the probe rows (one polarity, the chosen templates) give ``x``; contrast pairs
give ``x_pos``/``x_neg``: the statement and its negation (``negation``), or Burns et al.'s
question answered " Yes" / " No" (``burns``). Test rows of the templates not trained on are
captured for the held-out-template control, and test rows get their log-probability for the
likelihood control. Texts shared between datasets (``cities`` and ``neg_cities`` read the
same sentences) are run once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..models.loader import LoadedModel
from .datasets import BURNS_ANSWERS, BURNS_QUESTION, StatementDataset
from .features import last_token_states
from .methods import ProbeInputs

PAIR_KINDS = ("auto", "negation", "burns", "none")


@dataclass
class DatasetFeatures:
    """One dataset's probe rows as tensors, with what the controls need."""

    name: str
    dataset: StatementDataset  # every row
    rows: StatementDataset  # the probe rows, aligned with ``inputs``
    inputs: ProbeInputs  # (L, N, d) states; pairs when built
    groups: Tensor  # (N,) long: rows sharing an entity (or pair) resample together
    logprob: Tensor  # (N,) log P(statement); NaN outside the test split
    pair_kind: str | None  # "negation", "burns" or None
    held_out: HeldOut | None  # test rows of templates not trained on

    def split_index(self, *names: str) -> Tensor:
        return torch.as_tensor(self.rows.indices(split=list(names)), dtype=torch.long)


@dataclass
class HeldOut:
    templates: list[int]
    rows: StatementDataset
    inputs: ProbeInputs  # statements, and their contrast pairs when the probe rows have them


@dataclass
class _Plan:
    """Which texts one dataset needs: its probe rows, both halves of each pair, held-out rows."""

    rows: StatementDataset
    pair_kind: str | None
    pos: list[str] | None
    neg: list[str] | None
    held_out: StatementDataset | None
    held_pos: list[str] | None = None  # the held-out rows' pairs, of the same kind
    held_neg: list[str] | None = None


def resolve_pair_kind(ds: StatementDataset, rows: StatementDataset, requested: str) -> str | None:
    if requested not in PAIR_KINDS:
        raise ConfigError(f"--pairs must be one of {', '.join(PAIR_KINDS)}, got {requested!r}")
    if requested == "none":
        return None
    has_negations = ds.negation_partners(rows) is not None
    if requested == "negation" and not has_negations:
        raise ConfigError(f"dataset {ds.name!r} has no negated twin for every probe row, so "
                          "--pairs negation cannot be built; use --pairs burns (or auto)")
    if requested == "auto":
        return "negation" if has_negations else "burns"
    return requested


def _plan(ds: StatementDataset, templates: Sequence[int] | None, pairs: str,
          held_out: bool, held_out_ids: Sequence[int] | None) -> _Plan:
    for flag, ids in (("--templates", templates), ("--held-out", held_out_ids)):
        unknown = sorted(set(ids or []) - set(ds.template_ids()))
        if unknown:
            raise ConfigError(f"{flag} names templates {unknown} that dataset {ds.name!r} does not have; "
                              f"its templates are {ds.template_ids()}")
    rows = ds.probe_rows(templates)
    if len(rows) == 0:
        raise ConfigError(f"dataset {ds.name!r} has no rows for templates {list(templates or [])}; "
                          f"its templates are {ds.template_ids()}")
    kind = resolve_pair_kind(ds, rows, pairs)
    pos, neg = _pair_texts(ds, rows, kind)
    others = [t for t in ds.template_ids() if templates is not None and t not in templates
              and (held_out_ids is None or t in held_out_ids)]
    if not (held_out and others):
        return _Plan(rows, kind, pos, neg, None)
    extra = ds.where(split="test", polarity=ds.probe_polarity, templates=others)
    held_pos, held_neg = _pair_texts(ds, extra, kind)
    return _Plan(rows, kind, pos, neg, extra, held_pos, held_neg)


def _pair_texts(ds: StatementDataset, rows: StatementDataset,
                kind: str | None) -> tuple[list[str] | None, list[str] | None]:
    """Both halves of each row's contrast pair: the statement and its negation, or the Burns
    question answered Yes and No; (None, None) without pairs or a negation for every row."""
    if kind == "negation":
        partners = ds.negation_partners(rows)
        return (None, None) if partners is None else (rows.statements, ds.take(partners).statements)
    if kind == "burns":
        questions = [BURNS_QUESTION.format(statement=s) for s in rows.statements]
        return [q + BURNS_ANSWERS[0] for q in questions], [q + BURNS_ANSWERS[1] for q in questions]
    return None, None


def prepare_features(lm: LoadedModel, datasets: Sequence[StatementDataset],
                     templates: Sequence[int] | None, pairs: str = "auto", held_out: bool = True,
                     layers: Sequence[int] | None = None, batch_size: int = 64,
                     held_out_ids: Sequence[int] | None = None,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, DatasetFeatures]:
    """Capture every text the datasets need in one pass and assemble :class:`DatasetFeatures`.

    ``held_out``: also capture test rows of templates not fitted on (``held_out_ids`` of them,
    or all when None) for the held-out-template control.
    """
    plans = {ds.name: _plan(ds, templates, pairs, held_out, held_out_ids) for ds in datasets}
    texts: dict[str, int] = {}
    wants_logprob: dict[str, bool] = {}

    def add(items: Sequence[str], logprob: Sequence[bool] | None = None) -> None:
        for i, t in enumerate(items):
            texts.setdefault(t, len(texts))
            if logprob is not None and logprob[i]:
                wants_logprob[t] = True

    for plan in plans.values():
        add(plan.rows.statements, [s == "test" for s in plan.rows.columns["split"]])
        held = plan.held_out.statements if plan.held_out is not None else None
        for extra in (plan.pos, plan.neg, held, plan.held_pos, plan.held_neg):
            if extra is not None:
                add(extra)
    ordered = list(texts)
    states = last_token_states(lm, ordered, layers, batch_size,
                               logprob_mask=[wants_logprob.get(t, False) for t in ordered],
                               progress=progress)

    def gather(items: Sequence[str]) -> Tensor:
        return states.acts[:, [texts[t] for t in items]]  # (L, n, d)

    out = {}
    for ds in datasets:
        plan = plans[ds.name]
        y = torch.as_tensor(plan.rows.labels, dtype=torch.float32)
        inputs = ProbeInputs(gather(plan.rows.statements), y,
                             None if plan.pos is None else gather(plan.pos),
                             None if plan.neg is None else gather(plan.neg))
        logprob = states.logprob[[texts[t] for t in plan.rows.statements]]
        held = None
        if plan.held_out is not None:
            held_y = torch.as_tensor(plan.held_out.labels, dtype=torch.float32)
            held = HeldOut(plan.held_out.template_ids(), plan.held_out,
                           ProbeInputs(gather(plan.held_out.statements), held_y,
                                       None if plan.held_pos is None else gather(plan.held_pos),
                                       None if plan.held_neg is None else gather(plan.held_neg)))
        out[ds.name] = DatasetFeatures(ds.name, ds, plan.rows, inputs, group_codes(plan.rows),
                                       logprob, plan.pair_kind, held)
    return out


def group_codes(rows: StatementDataset) -> Tensor:
    """(N,) integer id of each row's entity (built-ins) or pair (imports)."""
    keys = rows.columns["entity"] if "entity" in rows.columns else rows.columns["pair_id"]
    _, codes = np.unique(np.asarray([str(k) for k in keys], dtype=object), return_inverse=True)
    return torch.as_tensor(codes, dtype=torch.long)
