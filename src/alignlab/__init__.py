"""alignlab: a workbench for empirical alignment research."""

__version__ = "0.1.0"
