"""Planted-truth data for the probe tests: truth lies along a known direction per layer."""

import pytest
import torch

from alignlab.probes.methods import ProbeInputs


def planted(n=300, d=16, strengths=(0.0, 0.5, 3.0), seed=0, offset=5.0):
    """Statements and contrast pairs whose truth is ``strength`` along a unit ``u`` per layer.

    ``x = noise + (2y-1) * s * u + offset``; pairs: ``x+ = b + (2y-1) s u``, ``x- = b - (2y-1) s u``
    with a shared per-row base ``b`` (the statement content both halves share).
    """
    g = torch.Generator().manual_seed(seed)
    n_layers = len(strengths)
    y = torch.zeros(n)
    y[torch.randperm(n, generator=g)[: n // 2]] = 1
    u = torch.randn(n_layers, d, generator=g)
    u = u / u.norm(dim=-1, keepdim=True)
    s = torch.tensor(strengths)[:, None, None]
    sign = (2 * y - 1)[None, :, None]
    x = torch.randn(n_layers, n, d, generator=g) + sign * s * u[:, None] + offset
    base = torch.randn(n_layers, n, d, generator=g) * 2 + offset
    x_pos = base + sign * s * u[:, None] + 0.3 * torch.randn(n_layers, n, d, generator=g)
    x_neg = base - sign * s * u[:, None] + 0.3 * torch.randn(n_layers, n, d, generator=g)
    return ProbeInputs(x, y, x_pos, x_neg), u




@pytest.fixture()
def make_planted():
    """The :func:`planted` generator, for tests that want other sizes or strengths."""
    return planted


@pytest.fixture()
def planted_splits():
    inputs, u = planted(n=600)
    idx = torch.arange(600)
    return inputs.take(idx[:360]), inputs.take(idx[360:480]), inputs.take(idx[480:]), u
