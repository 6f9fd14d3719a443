"""Loading causal LMs and naming their parts."""

from .anatomy import Anatomy
from .families import Family, supported_model_types
from .loader import LoadedModel, load_model
from .registry import BUILTIN, EMBEDDED_DEFAULT

__all__ = [
    "BUILTIN",
    "EMBEDDED_DEFAULT",
    "Anatomy",
    "Family",
    "LoadedModel",
    "load_model",
    "supported_model_types",
]
