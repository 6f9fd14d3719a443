"""Datasets: schema, built-in generators, splits by entity, CSV import, contrast partners."""

import numpy as np
import pytest

from alignlab.errors import DataError
from alignlab.probes.datasets import (
    SCHEMA,
    assign_splits,
    builtin_names,
    load_builtin,
    load_dataset,
    read_csv,
)

FAMILIES = ["cities", "capitals", "continents", "currencies", "larger_than", "smaller_than"]


@pytest.mark.parametrize("family", FAMILIES)
def test_builtin_schema_balance_and_provenance(family):
    ds = load_builtin(family)
    for column in SCHEMA:
        assert len(ds.column(column)) == len(ds)
    assert set(ds.column("polarity")) == {"affirmative", "negated"}
    assert len(ds.template_ids()) >= 3
    rows = ds.probe_rows([0])
    assert rows.labels.mean() == 0.5  # balanced: one true and one false statement per entity
    assert set(ds.column("split")) == {"train", "val", "test"}
    assert ds.source and ds.licence
    if family != "larger_than" and family != "smaller_than":
        assert "GeoNames" in ds.source and "CC BY 4.0" in ds.licence


def test_cities_is_the_thousand_statement_target_dataset():
    rows = load_builtin("cities").probe_rows([0])
    assert len(rows) == 1000
    assert rows.statements[0] == "The city of Shanghai is in China."
    assert all(s.startswith("The city of ") for s in rows.statements)
    # each city has one true and one false statement; the wrong country differs from the right one
    for true_row, false_row in zip(rows.statements[0::2], rows.statements[1::2]):
        assert true_row.split(" is in ")[0] == false_row.split(" is in ")[0]
        assert true_row != false_row


@pytest.mark.parametrize("family", FAMILIES)
def test_no_entity_straddles_splits(family):
    ds = load_builtin(family)
    split_of = {}
    for entity, split in zip(ds.column("entity"), ds.column("split")):
        assert split_of.setdefault(entity, split) == split


def test_negated_twins_flip_labels_and_views_share_rows():
    ds = load_builtin("cities")
    rows = ds.probe_rows([0])
    twins = ds.take(ds.negation_partners(rows))
    assert (twins.labels == 1 - rows.labels).all()
    assert all(" not " in s for s in twins.statements)
    neg = load_builtin("neg_cities").probe_rows([0])
    assert neg.statements == twins.statements


def test_generation_is_deterministic():
    a = load_builtin("capitals").statements
    from alignlab.probes.builtin import geo

    geo.capitals.cache_clear()
    assert load_builtin("capitals").statements == a


def test_assign_splits_groups_and_fractions():
    groups = [f"g{i // 3}" for i in range(300)]
    splits = assign_splits(groups, seed=0)
    assert splits == assign_splits(groups, seed=0)
    per_group = {}
    for g, s in zip(groups, splits):
        assert per_group.setdefault(g, s) == s
    counts = {s: list(per_group.values()).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 60, "val": 20, "test": 20}


def test_csv_import_minimal_and_full(tmp_path):
    path = tmp_path / "facts.csv"
    path.write_text("statement,label,topic\nThe sky is blue.,1,sky\nThe sky is green.,0,sky\n"
                    "Fire is cold.,False,fire\nIce is cold.,true,ice\n", encoding="utf-8")
    ds = read_csv(path)
    assert ds.name == "facts" and len(ds) == 4
    assert list(ds.labels) == [1, 0, 0, 1]
    assert ds.column("topic") == ["sky", "sky", "fire", "ice"]  # extra columns kept
    assert set(ds.column("polarity")) == {"affirmative"} and ds.probe_polarity is None
    assert set(ds.column("split")) <= {"train", "val", "test"}
    out = tmp_path / "round.csv"
    ds.to_csv(out)
    again = read_csv(out)
    assert again.columns == ds.columns


def test_builtin_round_trips_through_csv(tmp_path):
    ds = load_builtin("continents")
    ds.to_csv(tmp_path / "continents.csv")
    again = load_dataset(str(tmp_path / "continents.csv"))
    assert again.statements == ds.statements
    assert again.column("split") == ds.column("split")
    assert again.probe_polarity == "affirmative"  # both polarities present
    assert again.negation_partners(again.probe_rows([0])) is not None


@pytest.mark.parametrize("text, match", [
    ("label\n1\n", "no 'statement' column"),
    ("statement,label\nA.,maybe\n", "not 0/1"),
    ("statement,label\nA.,1\nB.,1\n", "both true and false"),
    ("statement\n", "no data rows"),
    ("statement,label,template_id\nA.,1,a\nB.,0,0\n", "line 2: template_id 'a' is not an integer"),
    ("statement,label\nA.,1\n ,0\n", "line 3: the statement is empty"),
    ("label,statement\n1\n0,B.\n", "line 2: the statement is empty"),
])
def test_bad_csv_raises_data_error(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=match):
        read_csv(path)


def test_unreadable_csv_raises_data_error(tmp_path, monkeypatch):
    import builtins

    path = tmp_path / "locked.csv"
    path.write_text("statement,label\nA.,1\nB.,0\n", encoding="utf-8")

    def refuse(*args, **kwargs):  # what open() raises on a file without read permission
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(builtins, "open", refuse)
    with pytest.raises(DataError, match="cannot open .*Permission denied; check the path and its permissions"):
        read_csv(path)


def test_blank_cells_in_optional_columns_get_defaults(tmp_path):
    path = tmp_path / "partial.csv"
    path.write_text("statement,label,pair_id,template_id\nA.,1,,\nB.,0,,1\nC.,1,p,\n", encoding="utf-8")
    ds = read_csv(path)
    assert ds.column("template_id") == [0, 1, 0]
    assert len(set(ds.column("pair_id"))) == 3  # blank pair ids do not pair unrelated rows


def test_unknown_name_lists_builtins():
    with pytest.raises(DataError, match="cities"):
        load_dataset("no_such_dataset")
    assert "neg_cities" in builtin_names()


def test_numbers_are_words_and_labels_right():
    ds = load_builtin("larger_than").probe_rows([0])
    first = ds.statements[0]
    assert first == "Fifty-three is larger than fifty-one." and ds.labels[0] == 1
    smaller = load_builtin("smaller_than").probe_rows([0])
    assert smaller.labels[0] == 0 and np.array_equal(smaller.labels, 1 - ds.labels)
