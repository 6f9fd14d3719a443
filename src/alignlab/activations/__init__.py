"""Sites, capture, the activation store, harvest and readers."""

from .capture import Captured, capturing, run_with_sites
from .harvest import HarvestConfig, harvest
from .reader import ShuffledReader
from .sites import KINDS, Site, all_sites, expand_sites, parse_site
from .stats import SiteStats
from .store import ActivationBatch, ActivationStore, StoreManifest, VerifyReport, verify_store

__all__ = [
    "KINDS",
    "ActivationBatch",
    "ActivationStore",
    "Captured",
    "HarvestConfig",
    "Site",
    "SiteStats",
    "ShuffledReader",
    "StoreManifest",
    "VerifyReport",
    "all_sites",
    "capturing",
    "expand_sites",
    "harvest",
    "parse_site",
    "run_with_sites",
    "verify_store",
]
