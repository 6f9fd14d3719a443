"""Labelled statements for truth probes: one schema, CSV import, built-in datasets, splits.

Every dataset is a table with the columns of :data:`SCHEMA`:

``statement``    the text the model reads
``label``        1 if the statement is true, 0 if false
``pair_id``      rows sharing it are one fact said both ways (a statement and its negation)
``polarity``     ``affirmative`` or ``negated``
``template_id``  which wording produced the row (0 when there is only one)
``source``       where the row came from
``split``        ``train``, ``val`` or ``test``, fixed when the dataset is made

Extra columns (``entity``, ``object`` ...) are kept. Splits group rows by ``entity`` when that
column exists, otherwise by ``pair_id``, so no fact (and no city) straddles two splits.
Any CSV with at least ``statement,label`` imports (the Geometry-of-Truth layout, Marks &
Tegmark 2023); missing columns get defaults and a seeded split.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError

SCHEMA = ("statement", "label", "pair_id", "polarity", "template_id", "source", "split")
POLARITIES = ("affirmative", "negated")
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
SPLIT_SEED = 0  # fixed: a dataset's splits never change between runs

# Burns et al. 2022 contrast pairs: one question, answered both ways; the hidden state is read
# at the answer's last token.
BURNS_QUESTION = "Is the following statement true?\n{statement}\nAnswer:"
BURNS_ANSWERS = (" Yes", " No")  # (x+, x-)
# The model's own answer, the "what it says" baseline (elk's zero-shot LM baseline). Of three
# wordings tried on the validation rows of ``cities`` with smollm2-135m ("Is the following
# statement true or false? ... Answer: True/False", "True or false: ... Answer:", and this one),
# this is the only one whose answer carried any signal (validation AUROC 0.63 vs 0.46, 0.53).
ZERO_SHOT_PROMPT = "{statement} This statement is"
ZERO_SHOT_ANSWERS = (" true", " false")


@dataclass(frozen=True)
class StatementDataset:
    """A table of statements with the :data:`SCHEMA` columns and any extras."""

    name: str
    columns: dict[str, list]  # column name -> values, all the same length
    source: str  # provenance, one line
    licence: str
    probe_polarity: str | None = None  # the rows a probe is fitted on; None: all rows
    description: str = ""
    templates: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (affirmative, negated)

    def __post_init__(self) -> None:
        lengths = {k: len(v) for k, v in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"dataset {self.name!r} has columns of different lengths: {lengths}")
        missing = [c for c in SCHEMA if c not in self.columns]
        if missing:
            raise DataError(f"dataset {self.name!r} lacks columns {missing}; it needs {list(SCHEMA)}")

    def __len__(self) -> int:
        return len(self.columns["statement"])

    @property
    def statements(self) -> list[str]:
        return self.columns["statement"]

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.columns["label"], dtype=np.int64)

    def column(self, name: str) -> list:
        if name not in self.columns:
            raise DataError(f"dataset {self.name!r} has no column {name!r}; it has {list(self.columns)}")
        return self.columns[name]

    def take(self, indices: Sequence[int] | np.ndarray) -> StatementDataset:
        """The rows at ``indices``, in that order."""
        idx = [int(i) for i in indices]
        cols = {k: [v[i] for i in idx] for k, v in self.columns.items()}
        return _replace_columns(self, cols)

    def where(self, *, split: str | Sequence[str] | None = None, polarity: str | None = None,
              templates: Sequence[int] | None = None) -> StatementDataset:
        """Rows matching every given filter."""
        return self.take(self.indices(split=split, polarity=polarity, templates=templates))

    def indices(self, *, split: str | Sequence[str] | None = None, polarity: str | None = None,
                templates: Sequence[int] | None = None) -> np.ndarray:
        keep = np.ones(len(self), dtype=bool)
        if split is not None:
            wanted = {split} if isinstance(split, str) else set(split)
            keep &= np.isin(np.asarray(self.columns["split"], dtype=object), list(wanted))
        if polarity is not None:
            keep &= np.asarray(self.columns["polarity"], dtype=object) == polarity
        if templates is not None:
            keep &= np.isin(np.asarray(self.columns["template_id"], dtype=np.int64), list(templates))
        return np.flatnonzero(keep)

    def probe_rows(self, templates: Sequence[int] | None = None) -> StatementDataset:
        """The rows probes are fitted and scored on (one polarity for built-ins)."""
        return self.where(polarity=self.probe_polarity, templates=templates)

    def template_ids(self) -> list[int]:
        return sorted(set(int(t) for t in self.columns["template_id"]))

    def negation_partners(self, rows: StatementDataset) -> list[int] | None:
        """For each row of ``rows``, the index (in ``self``) of its opposite-polarity twin.

        None when some row has no twin (e.g. an imported CSV without negations).
        """
        by_key = {(p, pol): i for i, (p, pol) in
                  enumerate(zip(self.columns["pair_id"], self.columns["polarity"]))}
        partners = []
        for pair, pol in zip(rows.columns["pair_id"], rows.columns["polarity"]):
            other = "negated" if pol == "affirmative" else "affirmative"
            j = by_key.get((pair, other))
            if j is None:
                return None
            partners.append(j)
        return partners

    def to_csv(self, path: str | Path) -> None:
        """Write every column (schema first, then extras) to a CSV file."""
        names = list(SCHEMA) + [c for c in self.columns if c not in SCHEMA]
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(names)
            for i in range(len(self)):
                writer.writerow([self.columns[c][i] for c in names])

    def summary(self) -> dict:
        """Counts a reader checks first: rows, balance, splits, templates, provenance."""
        labels = self.labels
        return {
            "name": self.name,
            "rows": len(self),
            "true": int(labels.sum()),
            "false": int(len(labels) - labels.sum()),
            "splits": {s: int((np.asarray(self.columns["split"], dtype=object) == s).sum()) for s in SPLITS},
            "templates": self.template_ids(),
            "polarities": sorted(set(self.columns["polarity"])),
            "source": self.source,
            "licence": self.licence,
        }


def _replace_columns(ds: StatementDataset, cols: dict[str, list]) -> StatementDataset:
    return StatementDataset(ds.name, cols, ds.source, ds.licence, ds.probe_polarity,
                            ds.description, ds.templates)


def assign_splits(groups: Sequence[str], seed: int = SPLIT_SEED,
                  fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> list[str]:
    """A split per row such that all rows of one group share a split (seeded, order-free)."""
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    n_train = int(round(fractions[0] * len(unique)))
    n_val = int(round(fractions[1] * len(unique)))
    split_of = {}
    for rank, i in enumerate(order):
        split_of[unique[i]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return [split_of[g] for g in groups]


# ---------------------------------------------------------------------------------------------
# Built-in datasets: generated offline from packaged facts (see ``probes/builtin``)


@dataclass(frozen=True)
class BuiltinDataset:
    """A named view on a generated table: which polarity the probe is fitted on."""

    name: str
    family: str  # the generator's name: views of one family share rows (and splits)
    polarity: str
    description: str


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {}
_GENERATORS: dict[str, Callable[[], StatementDataset]] = {}


def register_family(family: str, generator: Callable[[], StatementDataset], description: str) -> None:
    """Add ``family`` (affirmative view) and ``neg_<family>`` (negated view)."""
    if family in _GENERATORS:
        raise ValueError(f"dataset family {family!r} registered twice")
    _GENERATORS[family] = generator
    for name, polarity in ((family, "affirmative"), (f"neg_{family}", "negated")):
        if name in BUILTIN_DATASETS:
            raise ValueError(f"built-in dataset {name!r} registered twice")
        BUILTIN_DATASETS[name] = BuiltinDataset(name, family, polarity, description)


def builtin_names() -> list[str]:
    _register_builtins()
    return list(BUILTIN_DATASETS)


def load_builtin(name: str) -> StatementDataset:
    _register_builtins()
    if name not in BUILTIN_DATASETS:
        raise DataError(
            f"unknown built-in dataset {name!r}; built-in datasets are {', '.join(BUILTIN_DATASETS)} "
            "(or give a path to a CSV with at least statement,label columns)"
        )
    entry = BUILTIN_DATASETS[name]
    table = _GENERATORS[entry.family]()
    return StatementDataset(name, table.columns, table.source, table.licence, entry.polarity,
                            entry.description, table.templates)


def load_dataset(spec: str) -> StatementDataset:
    """A built-in name (``cities``, ``neg_cities`` ...) or a path to a ``.csv`` file."""
    if spec.lower().endswith(".csv") or Path(spec).is_file():
        return read_csv(spec)
    return load_builtin(spec)


def _register_builtins() -> None:
    if not _GENERATORS:
        from . import builtin  # noqa: F401  (importing it registers the families)


# ---------------------------------------------------------------------------------------------
# CSV import


def read_csv(path: str | Path, name: str | None = None, seed: int = SPLIT_SEED) -> StatementDataset:
    """Import a CSV with at least ``statement,label`` columns; other schema columns optional."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"dataset file {str(path)!r} does not exist; give a CSV path or a built-in "
                        f"name ({', '.join(builtin_names())})")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {str(path)!r} as a UTF-8 CSV: {exc}") from exc
    except OSError as exc:
        raise DataError(f"cannot open {str(path)!r}: {exc.strerror or exc}; check the path and its "
                        "permissions") from exc
    if not rows:
        raise DataError(f"{str(path)!r} has no data rows; it needs a header and at least statement,label")
    header = list(rows[0].keys())
    for needed in ("statement", "label"):
        if needed not in header:
            raise DataError(f"{str(path)!r} has no {needed!r} column (found {header}); "
                            "a probe dataset needs at least statement,label")
    # a short row leaves None in its missing cells: read those as empty
    cols = {k: ["" if r[k] is None else r[k] for r in rows] for k in header if k is not None}
    for line, text in enumerate(cols["statement"], start=2):
        if not text.strip():
            raise DataError(f"{str(path)!r} line {line}: the statement is empty; every row needs one")
    cols["label"] = [_parse_label(v, path, i) for i, v in enumerate(cols["label"], start=2)]
    if "template_id" in cols:
        cols["template_id"] = [_parse_template(v, path, i) for i, v in enumerate(cols["template_id"], start=2)]
    return _complete_columns(cols, name or path.stem, str(path), seed)


def _parse_label(value: str, path: Path, line: int) -> int:
    text = str(value).strip().lower()
    if text in ("1", "1.0", "true"):
        return 1
    if text in ("0", "0.0", "false"):
        return 0
    raise DataError(f"{str(path)!r} line {line}: label {value!r} is not 0/1 or true/false")


def _parse_template(value: str, path: Path, line: int) -> int:
    text = str(value).strip()
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{str(path)!r} line {line}: template_id {value!r} is not an integer") from None


def _complete_columns(cols: dict[str, list], name: str, source: str, seed: int) -> StatementDataset:
    n = len(cols["statement"])
    cols.setdefault("pair_id", [str(i) for i in range(n)])
    cols["pair_id"] = [str(p) if str(p) != "" else f"row{i}" for i, p in enumerate(cols["pair_id"])]
    cols.setdefault("polarity", ["affirmative"] * n)
    bad = sorted(set(cols["polarity"]) - set(POLARITIES))
    if bad:
        raise DataError(f"dataset {name!r}: polarity values {bad} are not {list(POLARITIES)}")
    cols["template_id"] = [int(t) for t in cols.get("template_id", [0] * n)]
    cols.setdefault("source", [source] * n)
    if "split" not in cols or any(s == "" for s in cols["split"]):
        groups = cols["entity"] if "entity" in cols else cols["pair_id"]
        cols["split"] = assign_splits([str(g) for g in groups], seed)
    bad = sorted(set(cols["split"]) - set(SPLITS))
    if bad:
        raise DataError(f"dataset {name!r}: split values {bad} are not {list(SPLITS)}")
    labels = set(cols["label"])
    if labels != {0, 1}:
        raise DataError(f"dataset {name!r} needs both true and false statements; labels found: {sorted(labels)}")
    ordered = {k: cols[k] for k in SCHEMA}
    ordered.update({k: v for k, v in cols.items() if k not in SCHEMA})
    polarity = "affirmative" if set(cols["polarity"]) == set(POLARITIES) else None
    return StatementDataset(name, ordered, source, "as given by the file's provider", polarity)


def table_from_facts(name: str, facts: list[dict], templates: dict[int, tuple[str, str]],
                     source: str, licence: str, seed: int = SPLIT_SEED) -> StatementDataset:
    """Render facts through every template, both polarities; split by ``entity``.

    Each fact is a dict with ``entity``, ``label`` and the template fields; a negated row has
    the opposite label.
    """
    cols: dict[str, list] = {k: [] for k in SCHEMA}
    extras = sorted({k for f in facts for k in f} - {"label"})
    cols.update({k: [] for k in extras})
    for f_index, fact in enumerate(facts):
        for t_id, (affirmative, negated) in templates.items():
            for polarity, template in (("affirmative", affirmative), ("negated", negated)):
                cols["statement"].append(_sentence(template.format(**fact)))
                label = int(fact["label"]) if polarity == "affirmative" else 1 - int(fact["label"])
                cols["label"].append(label)
                cols["pair_id"].append(f"{name}-{f_index}-t{t_id}")
                cols["polarity"].append(polarity)
                cols["template_id"].append(t_id)
                cols["source"].append(source)
                cols["split"].append("")
                for k in extras:
                    cols[k].append(fact.get(k, ""))
    cols["split"] = assign_splits([str(e) for e in cols["entity"]], seed)
    return StatementDataset(name, cols, source, licence, "affirmative", templates=templates)


def _sentence(text: str) -> str:
    """Capitalise the first letter ("the United States is ..." starts a sentence)."""
    return text[:1].upper() + text[1:]
