"""Sites, capture, and (later) the activation store."""

from .capture import Captured, capturing, run_with_sites
from .sites import KINDS, Site, all_sites, expand_sites, parse_site

__all__ = ["KINDS", "Captured", "Site", "all_sites", "capturing", "expand_sites", "parse_site", "run_with_sites"]
