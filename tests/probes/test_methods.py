"""Every method on planted truth, and each against a slow per-layer reference."""

import numpy as np
import pytest
import torch

from alignlab.errors import DataError
from alignlab.probes.evaluate import evaluate_probe
from alignlab.probes.fit import fit_probe
from alignlab.probes.methods import METHODS, MethodSettings, get_method
from alignlab.probes.methods.base import logistic_newton_1d, standardize_stats
from alignlab.probes.methods.ccs import ccs_loss
from alignlab.probes.methods.lr import design, newton_logistic
from alignlab.probes.methods.pairs import normalized_pairs, pair_stats

FAST = MethodSettings(ccs_tries=2, ccs_epochs=150, ccs_lr=2e-2)
LAYERS = [0, 1, 2]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_finds_planted_truth(planted_splits, name):
    train, val, test, u = planted_splits
    probe = fit_probe(name, train, val, LAYERS, FAST)
    ev = evaluate_probe(probe, test, n_bootstrap=50)
    direction = probe.direction()
    assert direction.shape == (3, 16)
    assert torch.allclose(direction.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert probe.logits(test).shape == (3, test.n)
    acc = ev.accuracy.estimate
    assert acc[0] < 0.65  # layer 0 carries no truth
    if name == "random":
        return
    assert probe.best_layer in (1, 2) and acc[probe.best_index] > 0.95
    assert acc[2] > 0.95
    assert (direction[2] * u[2]).sum() > 0.8  # points toward "true"


def test_all_layers_in_one_solve_equal_each_layer_alone(planted_splits):
    """Batching over layers changes nothing: a layer fitted alone gives the same probe."""
    train, val, _, _ = planted_splits
    for name in ("lr", "lda", "mean-diff", "eigen", "ccs"):
        both = get_method(name).fit(train, val, FAST)
        one = lambda t: None if t is None else t[2:3]  # noqa: E731
        from alignlab.probes.methods import ProbeInputs

        alone = get_method(name).fit(ProbeInputs(train.x[2:3], train.y, one(train.x_pos), one(train.x_neg)),
                                     ProbeInputs(val.x[2:3], val.y, one(val.x_pos), one(val.x_neg)), FAST)
        w_all, w_one = both["weight"][2], alone["weight"][0]
        cos = (w_all @ w_one) / (w_all.norm() * w_one.norm())
        if name == "ccs":  # restarts draw their init from one generator: compare quality instead
            continue
        assert abs(cos.item()) > 0.9999, name


def _objective64(xa, y, w, lam):
    logits = xa @ w
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    return loss + 0.5 * lam * (w[:-1] ** 2).sum()


def _lbfgs_reference(x64, y64, lam):
    ref = torch.zeros(x64.shape[-1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([ref], max_iter=2000, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = _objective64(x64, y64, ref, lam)
        loss.backward()
        return loss

    opt.step(closure)
    return ref


def test_lr_matches_slow_lbfgs_per_layer(planted_splits):
    """Every layer of the batched Newton solve against float64 L-BFGS on that layer alone."""
    train, _, _, _ = planted_splits
    mean, std = standardize_stats(train.x)
    xa = design(train.x, mean, std)
    lam = torch.tensor([0.1, 0.01, 0.003])
    w = newton_logistic(xa, train.y, lam)
    for layer in range(3):
        x64, y64 = xa[layer].double(), train.y.double()
        ref = _lbfgs_reference(x64, y64, lam[layer].item()).detach()
        ours = _objective64(x64, y64, w[layer].double(), lam[layer].item()).item()
        best = _objective64(x64, y64, ref, lam[layer].item()).item()
        assert ours <= best + 1e-6
        assert torch.allclose(w[layer].double(), ref, atol=2e-3)


def test_mean_diff_and_lda_match_numpy_loops(planted_splits):
    train, val, _, _ = planted_splits
    md = get_method("mean-diff").fit(train, val, FAST)
    lda = get_method("lda").fit(train, val, FAST)
    for layer in range(3):
        x, y = train.x[layer].numpy().astype(np.float64), train.y.numpy().astype(bool)
        ref = x[y].mean(0) - x[~y].mean(0)
        assert np.allclose(md["weight"][layer].numpy(), ref, atol=1e-4)
        z = (x - x.mean(0)) / x.std(0, ddof=1)
        centred = np.concatenate([z[y] - z[y].mean(0), z[~y] - z[~y].mean(0)])
        cov = centred.T @ centred / len(z)
        g = float(lda["shrinkage"][layer])
        w = np.linalg.solve((1 - g) * cov + g * np.eye(len(cov)), z[y].mean(0) - z[~y].mean(0))
        assert np.allclose(lda["weight"][layer].numpy(), w, atol=1e-3)


def test_eigen_matches_numpy_eigh_per_layer(planted_splits):
    train, val, _, _ = planted_splits
    state = get_method("eigen").fit(train, val, FAST)
    for layer in range(3):
        xp = train.x_pos[layer].numpy().astype(np.float64)
        xn = train.x_neg[layer].numpy().astype(np.float64)
        xp = (xp - xp.mean(0)) / np.sqrt(((xp - xp.mean(0)) ** 2).mean(0)).mean()
        xn = (xn - xn.mean(0)) / np.sqrt(((xn - xn.mean(0)) ** 2).mean(0)).mean()
        n = len(xp)
        a = (xp.T @ xp + xn.T @ xn) / n - 5.0 * (xp.T @ xn + xn.T @ xp) / n
        vals, vecs = np.linalg.eigh(a)
        ref = vecs[:, -1]
        assert abs(float(np.dot(state["weight"][layer].numpy(), ref))) > 0.9999


def _burns_reference(xp, xn, w0, b0, settings):
    """Burns et al.'s training loop for one layer and one restart (nn.Linear + Sigmoid + AdamW)."""
    probe = torch.nn.Sequential(torch.nn.Linear(xp.shape[1], 1), torch.nn.Sigmoid())
    with torch.no_grad():
        probe[0].weight.copy_(w0[None])
        probe[0].bias.copy_(b0.reshape(1))
    opt = torch.optim.AdamW(probe.parameters(), lr=settings.ccs_lr, weight_decay=settings.ccs_weight_decay)
    for _ in range(settings.ccs_epochs):
        p0, p1 = probe(xn), probe(xp)
        loss = (torch.min(p0, p1) ** 2).mean(0) + ((p0 - (1 - p1)) ** 2).mean(0)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    return probe[0].weight.detach()[0], probe[0].bias.detach()[0]


@pytest.mark.parametrize("chunk", [2, 8])
def test_ccs_equals_independent_burns_runs(planted_splits, chunk, monkeypatch):
    """The (L, d, R) tensor trains exactly as L*R separate Burns runs from the same inits,
    however the layers are chunked."""
    import alignlab.probes.methods.ccs as ccs

    monkeypatch.setattr(ccs, "LAYER_CHUNK", chunk)
    train, _, _, _ = planted_splits
    settings = MethodSettings(ccs_tries=2, ccs_epochs=40, seed=7)
    stats = pair_stats(train)
    xp, xn = normalized_pairs(stats, train)
    from alignlab.probes.methods.ccs import train_ccs

    got = train_ccs(xp, xn, settings)
    g = torch.Generator().manual_seed(7)  # the same draws train_ccs makes
    d = xp.shape[-1]
    w_init = (torch.rand(3, d, 2, generator=g) * 2 - 1) / d ** 0.5
    b_init = (torch.rand(3, 1, 2, generator=g) * 2 - 1) / d ** 0.5
    for layer in range(3):
        finals = []
        for r in range(2):
            w, b = _burns_reference(xp[layer], xn[layer], w_init[layer, :, r], b_init[layer, 0, r], settings)
            p_pos = torch.sigmoid(xp[layer] @ w + b)[:, None]
            p_neg = torch.sigmoid(xn[layer] @ w + b)[:, None]
            finals.append((ccs_loss(p_pos, p_neg).item(), w, b))
        loss, w, b = min(finals, key=lambda t: t[0])
        assert got["loss"][layer].item() == pytest.approx(loss, abs=1e-5)
        assert torch.allclose(got["weight"][layer], w, atol=1e-4)
        assert got["bias"][layer].item() == pytest.approx(b.item(), abs=1e-4)


def test_ccs_loss_formula():
    p_pos = torch.tensor([[0.9], [0.2]])
    p_neg = torch.tensor([[0.1], [0.7]])
    expected = ((0.1 ** 2 + 0.2 ** 2) / 2) + ((0.9 - 0.9) ** 2 + (0.2 - 0.3) ** 2) / 2
    assert ccs_loss(p_pos, p_neg).item() == pytest.approx(expected)


def test_platt_scaling_matches_slow_reference():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 200, generator=g) * 3
    y = (torch.rand(200, generator=g) < torch.sigmoid(-1.5 * s[0] + 0.4)).float()
    a, b = logistic_newton_1d(s, y)
    ab = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([ab], max_iter=500, tolerance_grad=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(ab[0] * s[0].double() + ab[1], y.double())
        loss.backward()
        return loss

    opt.step(closure)
    assert a[0].item() == pytest.approx(ab[0].item(), abs=2e-3)
    assert b[0].item() == pytest.approx(ab[1].item(), abs=2e-3)
    assert a[0].item() < 0  # the sign comes out of the calibration


def test_layer_is_chosen_on_validation_accuracy(planted_splits):
    train, val, _, _ = planted_splits
    probe = fit_probe("mean-diff", train, val, LAYERS, FAST, refit=False)
    val_acc = torch.tensor(probe.info["val_accuracy"])
    assert probe.best_layer == LAYERS[int(val_acc.argmax())]


def test_unknown_method_lists_registry():
    from alignlab.errors import ConfigError

    with pytest.raises(ConfigError, match="lr"):
        get_method("svm")


def test_solve_spd_matches_numpy_and_mends_singular_matrices():
    from alignlab.probes.methods.base import solve_spd

    g = torch.Generator().manual_seed(0)
    m = torch.randn(3, 40, 40, generator=g, dtype=torch.float64)
    a = m @ m.transpose(1, 2) + 0.1 * torch.eye(40, dtype=torch.float64)
    a[2] = torch.outer(m[2, 0], m[2, 0])  # rank one: Cholesky fails without jitter
    b = torch.randn(3, 40, 1, generator=g, dtype=torch.float64)
    x = solve_spd(a, b)
    for i in range(2):
        assert np.allclose(x[i].numpy(), np.linalg.solve(a[i].numpy(), b[i].numpy()), atol=1e-8)
    assert torch.isfinite(x[2]).all()
    with pytest.raises(DataError, match="non-finite"):
        solve_spd(torch.full((1, 2, 2), float("nan"), dtype=torch.float64), b[:1, :2])


def test_probe_solvers_survive_set_num_threads():
    """torch 2.13's batched LU on CPU errors and hangs on matrices of 256+ rows once
    torch.set_num_threads(>1) has run (as `alignlab train-tiny` does when it restores threads);
    the probe solvers must not depend on it."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import torch
        torch.set_num_threads(2)
        from alignlab.probes.fit import fit_probe
        from alignlab.probes.methods import MethodSettings, ProbeInputs
        g = torch.Generator().manual_seed(0)
        d, n = 300, 400
        truth = torch.randn(d, generator=g)
        x = torch.randn(2, n, d, generator=g)
        y = (x[0] @ truth > 0).float()
        data = ProbeInputs(x, y)
        train, val = data.take(torch.arange(300)), data.take(torch.arange(300, 400))
        for name in ("lda", "lr"):
            probe = fit_probe(name, train, val, [0, 1], MethodSettings(lr_penalties=(1e-2,)))
            print(name, probe.best_layer)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "oneMKL ERROR" not in done.stderr
    assert done.stdout.split() == ["lda", "0", "lr", "0"]
