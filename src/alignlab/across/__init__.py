"""Analyses across training: checkpoint series, and a tiny model trained with a Pythia-like schedule."""

from .tiny import TinyResult, TrainTinyConfig, checkpoint_steps, train_tiny

__all__ = ["TinyResult", "TrainTinyConfig", "checkpoint_steps", "train_tiny"]
