"""Ground truth for coders: activations built from planted sparse features in superposition.

Each row is ``b + sum_i a_i d_i`` over a known dictionary of unit directions ``d_i`` (more
directions than dimensions, so they cannot be orthogonal), where feature i fires independently
with a known probability and, when it fires, with a magnitude drawn uniformly from
``[min_magnitude, max_magnitude]`` (after the toy models of Elhage et al. 2022 and the
synthetic benchmarks of SAEBench/SynthSAEBench). A coder recovers feature i if one of its
decoder rows points the same way: recovery is the mean over features of the best cosine
similarity, and the fraction of features whose best cosine exceeds 0.9.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError

RECOVERY_COSINE = 0.9


@dataclass(frozen=True)
class PlantedConfig:
    """The generating process; the same config and seed always give the same data."""

    d: int = 64  # activation width
    n_features: int = 256  # planted directions (n_features > d: superposition)
    mean_active: float = 4.0  # expected features active per row (the planted L0)
    min_magnitude: float = 0.5
    max_magnitude: float = 1.5
    frequency_spread: float = 4.0  # firing probabilities spread log-uniformly over this ratio
    offset_norm: float = 2.0  # norm of a constant offset b (so the mean matters for FVU)
    noise: float = 0.0  # standard deviation of isotropic Gaussian noise per dimension
    seed: int = 0

    def __post_init__(self) -> None:
        if self.d < 1 or self.n_features < 1:
            raise ConfigError(f"d and n_features must be positive, got {self.d}, {self.n_features}")
        if not 0 < self.mean_active <= self.n_features:
            raise ConfigError(f"mean_active must be in (0, n_features], got {self.mean_active}")
        if not 0 <= self.min_magnitude <= self.max_magnitude:
            raise ConfigError("need 0 <= min_magnitude <= max_magnitude")
        if self.frequency_spread < 1:
            raise ConfigError(f"frequency_spread must be >= 1, got {self.frequency_spread}")


@dataclass(frozen=True)
class PlantedFeatures:
    config: PlantedConfig
    dictionary: Tensor  # (n_features, d), unit rows
    firing_prob: Tensor  # (n_features,)
    offset: Tensor  # (d,)


@dataclass(frozen=True)
class SyntheticBatch:
    x: Tensor  # (N, d)
    codes: Tensor  # (N, n_features): the planted magnitudes, 0 where a feature is off


@dataclass(frozen=True)
class Recovery:
    """How well a decoder's rows match the planted directions."""

    mean_max_cosine: float  # mean over planted features of the best cosine with any decoder row (signed: latents are non-negative)
    fraction_recovered: float  # share of planted features with best cosine > threshold
    threshold: float
    max_cosine: Tensor  # (n_features,)

    def to_json(self) -> dict:
        return {"mean_max_cosine": self.mean_max_cosine, "fraction_recovered": self.fraction_recovered,
                "threshold": self.threshold}


def plant_features(config: PlantedConfig) -> PlantedFeatures:
    gen = torch.Generator().manual_seed(config.seed)
    dictionary = torch.randn(config.n_features, config.d, generator=gen)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    # log-uniform spread of frequencies, rescaled so the expected L0 is exactly mean_active
    log_spread = torch.rand(config.n_features, generator=gen, dtype=torch.float64)
    weights = torch.exp(log_spread * torch.log(torch.tensor(config.frequency_spread, dtype=torch.float64)))
    prob = weights / weights.sum() * config.mean_active
    if prob.max() > 1:
        raise ConfigError(
            f"mean_active={config.mean_active} with frequency_spread={config.frequency_spread} "
            f"gives firing probabilities above 1; lower either"
        )
    offset = torch.randn(config.d, generator=gen)
    offset = offset / offset.norm() * config.offset_norm
    return PlantedFeatures(config, dictionary, prob.float(), offset)


def sample(planted: PlantedFeatures, n: int, seed: int = 1) -> SyntheticBatch:
    """``n`` rows; ``seed`` picks the sample (the dictionary is fixed by the config's seed)."""
    cfg = planted.config
    gen = torch.Generator().manual_seed(seed)
    on = torch.rand(n, cfg.n_features, generator=gen) < planted.firing_prob  # (N, F)
    span = cfg.max_magnitude - cfg.min_magnitude
    magnitudes = cfg.min_magnitude + span * torch.rand(n, cfg.n_features, generator=gen)
    codes = magnitudes * on  # (N, F)
    x = codes @ planted.dictionary + planted.offset  # (N, d)
    if cfg.noise > 0:
        x = x + cfg.noise * torch.randn(n, cfg.d, generator=gen)
    return SyntheticBatch(x, codes)


@torch.no_grad()
def recovery(decoder: Tensor, dictionary: Tensor, threshold: float = RECOVERY_COSINE) -> Recovery:
    """Best cosine of each planted direction (rows of ``dictionary``) with any row of ``decoder``."""
    dec = decoder.float() / decoder.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    ref = dictionary.float() / dictionary.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    best = (ref @ dec.T).max(dim=1).values  # (F,)
    return Recovery(float(best.mean()), float((best > threshold).float().mean()), threshold, best)
