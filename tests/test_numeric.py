"""Coloured central differences against a plain per-entry loop, colourings, structures,
the fallback for a wrong structure, and a wrong entry found at its index in a large layer."""
from __future__ import annotations

import numpy as np
import pytest

from gradcheck_cli import numeric, sparsity
from gradcheck_cli.check import run_case
from gradcheck_cli.layers.conv import Conv2d, conv2d_forward
from gradcheck_cli.layers.dense import Linear
from gradcheck_cli.network import Network
from gradcheck_cli.registry import Layer, form

EPS = float(np.finfo(np.float64).eps) ** (1 / 3)


def plain_loop(net: Network, i: int, t: str, index) -> np.ndarray:
    """The oracle: perturb one entry, run every layer from i to the loss, twice per entry."""
    xs = net.forward()
    out = []
    for j in index:
        vals = []
        for sign in (1, -1):
            x = xs[i].copy()
            params = [dict(p) for p in net.params]
            v = x if t == "x" else params[i][t].copy()
            h = EPS * max(1.0, abs(v.flat[j]))
            v.flat[j] += sign * h
            if t != "x":
                params[i][t] = v
            for layer, p in zip(net.layers[i:], params[i:]):
                x = layer.forward(x, p)
            reg = 0.0
            if net.case.l2:
                reg = 0.5 * net.case.l2 * sum(float(np.sum(p[n] ** 2)) for layer, p in zip(net.layers, params)
                                              for n in layer.regularized if n in p)
            vals.append(net.loss.value(x) + reg)
        out.append((vals[0] - vals[1]) / (2 * h))
    return np.array(out)


def numerical(net: Network, i: int, t: str, index=None, budget=numeric.DEFAULT_BUDGET):
    xs = net.forward()
    size = net.value_of(i, t, xs).size
    index = np.arange(size) if index is None else np.asarray(index)
    p = numeric.plan(net, i, t, index)
    T0 = net.base_terms(xs)
    L0 = float(net.loss.value(xs[-1]) + net.reg_value())
    return p, numeric.differentiate(net, p, xs, T0, L0, None, budget)


NETS = {
    "conv-relu-linear-ce": dict(
        input=[3, 2, 7, 6],
        layers=[{"type": "conv2d", "out_channels": 3, "kernel": 3, "padding": 1},
                {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "out_features": 4}],
        loss="cross_entropy"),
    "conv-stride-tanh-mse": dict(
        input=[2, 3, 9, 8],
        layers=[{"type": "conv2d", "out_channels": 2, "kernel": [3, 2], "stride": 2, "padding": 1},
                {"type": "tanh"}, {"type": "conv2d", "out_channels": 2, "kernel": 2}],
        loss={"type": "mse", "reduction": "mean"}),
    "linear-sigmoid-l2": dict(
        input=[5, 6], layers=[{"type": "linear", "out_features": 4}, {"type": "sigmoid"},
                              {"type": "add"}],
        loss="projection", regularization={"l2": 0.1}),
    "conv-pools-tanh-ce": dict(
        input=[2, 2, 9, 8],
        layers=[{"type": "conv2d", "out_channels": 3, "kernel": 2}, {"type": "maxpool2d", "size": 2},
                {"type": "tanh"}, {"type": "avgpool2d", "size": [2, 1], "stride": 1}],
        loss="cross_entropy"),
    "conv1d-corr1d-sum": dict(
        input=[2, 2, 11],
        layers=[{"type": "conv1d", "out_channels": 1, "kernel": 3, "padding": 1},
                {"type": "flatten"}, {"type": "correlation1d", "kernel": 4}],
        loss="sum"),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_coloured_differences_equal_a_plain_loop(make_case, name):
    net = Network.build(make_case(name=name, seed=3, **NETS[name]))
    for i, t in net.tensors():
        before = net.copies
        p, numer = numerical(net, i, t)
        used = net.copies - before                       # forward evaluations actually run
        want = plain_loop(net, i, t, p.index)
        np.testing.assert_allclose(numer.values, want, rtol=1e-6, atol=1e-8, err_msg=f"{name} {i} {t}")
        if t != "x" and net.structure(i, t) is None:     # a parameter without structure: no probes
            assert numer.method == "per-entry" and used == p.evaluations == 2 * len(p.index)
            continue
        assert numer.method.startswith("coloured"), (i, t)
        assert used == p.evaluations == 2 * p.colours + len(numeric._probe_positions(len(p.index)))
        assert np.all(numer.noise >= 0) and np.all(numer.noise < 1e-6)


def test_small_chunks_give_the_same_values(make_case):
    net = Network.build(make_case(name="c", seed=1, **NETS["conv-relu-linear-ce"]))
    _, whole = numerical(net, 0, "x")
    _, chunked = numerical(net, 0, "x", budget=1)
    np.testing.assert_array_equal(whole.values, chunked.values)


def test_sampled_entries_use_the_colouring_and_match_the_loop(make_case):
    net = Network.build(make_case(name="c", seed=2, **NETS["conv-stride-tanh-mse"]))
    pick = np.sort(np.random.default_rng(0).choice(2 * 3 * 9 * 8, size=40, replace=False))
    p, numer = numerical(net, 0, "x", pick)
    assert p.colours < 40
    np.testing.assert_allclose(numer.values, plain_loop(net, 0, "x", pick), rtol=1e-6, atol=1e-8)


def test_conv_colours_are_channels_times_kernel(make_case):
    net = Network.build(make_case(name="c", input=[4, 5, 12, 12], loss="projection",
                                  layers=[{"type": "conv2d", "out_channels": 6, "kernel": 3, "padding": 1}]))
    xs = net.forward()
    counts = {t: numeric.plan(net, 0, t, np.arange(net.value_of(0, t, xs).size)).colours for t in ("x", "W", "b")}
    assert counts == {"x": 5 * 9, "W": 5 * 9, "b": 1}


def test_linear_colours(make_case):
    net = Network.build(make_case(name="c", input=[3, 7], loss="mse",
                                  layers=[{"type": "linear", "out_features": 5}]))
    plans = {t: numeric.plan(net, 0, t, np.arange(n)) for t, n in (("x", 21), ("W", 35), ("b", 5))}
    assert plans["x"].colours == 7            # every output reads every input of its sample
    assert plans["W"].colours == 7            # W[d, c] reaches output c only
    assert plans["b"].colours == 1


def _brute_structure(f, shape, out_size):
    """Which outputs move when one entry moves, by perturbing each entry (plain loop)."""
    base = np.random.default_rng(5).standard_normal(shape)
    y0 = f(base).reshape(-1)
    rows, cols = [], []
    for j in range(base.size):
        v = base.copy()
        v.flat[j] += 1.0
        moved = np.flatnonzero(f(v).reshape(-1) != y0)
        rows += list(moved)
        cols += [j] * len(moved)
    S = np.zeros((out_size, base.size), dtype=bool)
    S[rows, cols] = True
    return S


@pytest.mark.parametrize("opts", [dict(kernel=3, padding=1), dict(kernel=[2, 3], stride=[2, 1], padding=[1, 0]),
                                  dict(kernel=3, stride=2, padding=0)])
def test_conv_structure_is_exact(opts):
    layer = Conv2d(out_channels=2, **{"stride": 1, "padding": 0, "bias": True, **opts})
    in_shape = (1, 3, 7, 6)
    out_shape = layer.output_shape(in_shape)
    rng = np.random.default_rng(0)
    W = rng.standard_normal(layer.param_shapes(in_shape)["W"])
    b = rng.standard_normal(2)
    x0 = rng.standard_normal(in_shape)
    n_out = int(np.prod(out_shape[1:]))
    fx = lambda x: conv2d_forward(x, W, b, layer.s, layer.p)
    fW = lambda w: conv2d_forward(x0, w, b, layer.s, layer.p)
    fb = lambda bb: conv2d_forward(x0, W, bb, layer.s, layer.p)
    for name, f, shape in (("x", fx, in_shape), ("W", fW, W.shape), ("b", fb, b.shape)):
        want = _brute_structure(f, shape, n_out)
        got = layer.structure(in_shape, name).toarray()
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("seed, density", [(0, 0.08), (1, 0.02), (2, 0.3), (3, 0.0)])
def test_colouring_is_proper_and_greedy(seed, density):
    rng = np.random.default_rng(seed)
    S = (rng.random((40, 60)) < density)
    colour, n = sparsity.colour_columns(sparsity.from_pairs(*np.nonzero(S), S.shape))
    for c in range(n):
        members = S[:, colour == c]
        assert members.sum(axis=1).max(initial=0) <= 1      # no row shared within a colour
    degree = max(int(((S[:, [j]] & S).any(axis=0)).sum()) - 1 for j in range(60))
    assert n <= max(degree, 0) + 1                          # first fit never needs more
    assert sparsity.colour_columns(None, np.arange(7)) == (pytest.approx(np.arange(7)), 7)


class Mixer(Layer):
    """y = x + 0.5 * roll(x) within each sample, but declaring the identity structure (wrong)."""

    na = {"kron": "test layer", "spray": "test layer"}

    def forward(self, x, params):
        return x + 0.5 * np.roll(x, 1, axis=1)

    def structure(self, in_shape, name):
        return sparsity.identity(int(np.prod(in_shape[1:])))

    @form("correlation", seed="test")
    def correlation(self, dy, x, params):
        return {"x": dy + 0.5 * np.roll(dy, -1, axis=1)}


def test_a_structure_too_small_is_caught_and_redone_per_entry(make_case, temp_layer):
    temp_layer("test-mixer", Mixer)
    net = Network.build(make_case(name="m", input=[3, 6], layers=[{"type": "test-mixer"}], loss="projection"))
    p, numer = numerical(net, 0, "x")
    assert p.colours == 1 and numer.method == "per-entry"
    np.testing.assert_allclose(numer.values, plain_loop(net, 0, "x", p.index), rtol=1e-7)
    done = []
    xs = net.forward()
    numeric.differentiate(net, p, xs, net.base_terms(xs), float(net.loss.value(xs[-1])), progress=done.append)
    assert sum(done) == len(p.index)          # progress is not counted twice after the fallback


def test_copies_of_an_abandoned_colouring_are_counted(make_case, temp_layer):
    """The probes that caught the wrong structure ran: they count in forward_evaluations."""
    rows = []

    class CountingMixer(Mixer):
        def forward(self, x, params):
            rows.append(x.shape[0])
            return super().forward(x, params)

    temp_layer("test-counting-mixer", CountingMixer)
    case = make_case(name="m", input=[3, 6], layers=[{"type": "test-counting-mixer"}], loss="projection")
    net = Network.build(case)
    xs = net.forward()
    rows.clear()
    p = numeric.plan(net, 0, "x", np.arange(18))
    numeric.differentiate(net, p, xs, net.base_terms(xs), float(net.loss.value(xs[-1])))
    copies = sum(rows) // 3                   # batches of N = 3 rows through the layer
    assert copies == net.copies == 3 + 2 * 18  # 3 probes (abandoned), then 2 per entry
    assert run_case(case, mode="network").evaluations == 3 + 2 * 18


class BatchCentre(Layer):
    """y = x - mean over the batch: samples mix, so the check may not share copies."""

    per_sample = False
    na = {"kron": "test layer", "spray": "test layer"}

    def forward(self, x, params):
        return x - x.mean(axis=0, keepdims=True)

    @form("correlation", seed="test")
    def correlation(self, dy, x, params):
        return {"x": dy - dy.mean(axis=0, keepdims=True)}


def test_layers_that_mix_samples_are_checked_per_entry(make_case, temp_layer):
    temp_layer("test-centre", BatchCentre)
    net = Network.build(make_case(name="b", input=[4, 3], loss="mse",
                                  layers=[{"type": "linear", "out_features": 3}, {"type": "test-centre"}]))
    for i, t in net.tensors():
        p, numer = numerical(net, i, t)
        assert p.method == "per-entry"
        np.testing.assert_allclose(numer.values, plain_loop(net, i, t, p.index), rtol=1e-7, atol=1e-9)


class WrongConv(Conv2d):
    """Conv2d whose correlation-form dL/dx is off by 1e-4 at one entry."""

    AT = (1, 2, 9, 4)

    @form("correlation", seed="test: a deliberately wrong entry")
    def correlation(self, dy, x, params):
        g = super().correlation(dy, x, params)
        g["x"] = g["x"].copy()
        g["x"][self.AT] += 1e-4
        return g


def test_a_wrong_entry_in_a_large_layer_is_reported_at_its_index(make_case, temp_layer):
    temp_layer("test-wrong-conv", WrongConv)
    case = make_case(name="wrong", input=[2, 8, 24, 24], loss="projection", forms=["correlation"],
                     layers=[{"type": "test-wrong-conv", "out_channels": 8, "kernel": 3, "padding": 1}])
    for mode in ("network", "local"):
        res = run_case(case, mode=mode)
        rows = {r.tensor: r for r in res.rows}
        assert rows["x"].checked == 2 * 8 * 24 * 24
        assert rows["x"].failed == 1 and rows["x"].worst_index == WrongConv.AT
        assert rows["W"].passed and rows["b"].passed
        assert res.culprits == [(0, "x")]
    res = run_case(case, mode="network")
    assert res.evaluations == 2 * (8 * 9 + 8 * 9 + 1) + 3 + 3 + 3   # pairs per colour + probes


def test_linear_weight_structure_is_one_output_column_per_entry():
    """W[d, c] of a linear layer reaches output c alone (row-major entry j = d * C + c)."""
    layer = Linear(out_features=3, bias=True)
    S = layer.structure((2, 4), "W").toarray()
    assert S.shape == (3, 12)
    assert all(S[j % 3, j] and S[:, j].sum() == 1 for j in range(12))


@pytest.mark.parametrize("cls, opts", [("maxpool2d", dict(size=2)), ("avgpool2d", dict(size=[3, 2], stride=[2, 1])),
                                       ("avgpool2d", dict(size=2, stride=1))])
def test_pool_structure_covers_what_moves(cls, opts):
    from gradcheck_cli.catalog import get

    layer = get(cls).cls(**{"stride": None, **opts})
    in_shape = (1, 2, 7, 6)
    n_out = int(np.prod(layer.output_shape(in_shape)[1:]))
    want = _brute_structure(lambda x: layer.forward(x, {}), in_shape, n_out)
    got = layer.structure(in_shape, "x").toarray()
    assert not np.any(want & ~got)                      # never under
    if cls == "avgpool2d":
        np.testing.assert_array_equal(got, want)        # exact for a linear pool


def test_structures_too_big_to_hold_claim_nothing(monkeypatch):
    monkeypatch.setattr(sparsity, "MAX_NNZ", 100)
    assert Conv2d(out_channels=4, kernel=3, stride=1, padding=1, bias=True).structure((1, 3, 8, 8), "x") is None
    from gradcheck_cli.catalog import get

    assert get("maxpool2d").cls(size=2, stride=None).structure((1, 30, 8, 8), "x") is None


@pytest.mark.parametrize("picked", [60, None])          # some entries (regions gathered), all (owner map)
def test_kink_refinement_of_x_is_coloured_and_matches_one_entry_per_copy(make_case, picked):
    from gradcheck_cli.check import REFINE, per_sample_losses, refine

    net = Network.build(make_case(name="k", seed=4, input=[3, 2, 8, 8], loss="projection",
                                  layers=[{"type": "conv2d", "out_channels": 3, "kernel": 3, "padding": 1},
                                          {"type": "relu"}, {"type": "maxpool2d", "size": 2}, {"type": "tanh"}]))
    xs = net.forward()
    index = (np.arange(xs[2].size) if picked is None else
             np.sort(np.random.default_rng(1).choice(xs[2].size, picked, replace=False)))
    step = numeric.steps(xs[2].reshape(-1)[index], None)
    fine = refine(net, 2, "x", xs, xs[2], index, step, chunk=1000)
    assert net.copies < 4 * len(index)                       # copies shared by entries
    flat = xs[2].reshape(-1)
    for q, j in enumerate(index):                            # oracle: one entry per copy
        V = np.repeat(flat[None], 4, axis=0)
        V[:, j] += [step[q], -step[q], step[q] / REFINE, -step[q] / REFINE]
        want = per_sample_losses(net, 2, "x", V.reshape(4, *xs[2].shape), xs)
        got = np.stack([fine.plus[q], fine.minus[q], fine.plus_fine[q], fine.minus_fine[q]])
        np.testing.assert_allclose(got - fine.base, want - fine.base, rtol=1e-9, atol=1e-13)


def test_coloured_one_sided_gap_is_the_region_s_own_second_difference(make_case):
    """dplus + dminus of a coloured entry is read off its own region (one term of tanh + mse),
    not as L(v+h) + L(v-h) - 2 L(v): that brings back a round-off of u |L| / h from all terms."""
    net = Network.build(make_case(name="g", seed=5, input=[16, 64], layers=[{"type": "tanh"}],
                                  loss={"type": "mse", "reduction": "sum"}))
    p, numer = numerical(net, 0, "x")
    assert numer.method.startswith("coloured")
    x, t = net.x0.reshape(-1), net.loss.target.reshape(-1)
    h = EPS * np.maximum(1.0, np.abs(x))

    def f(v):
        return 0.5 * (np.tanh(v) - t) ** 2

    second = f(x + h) + f(x - h) - 2 * f(x)
    term = float(np.max(f(x)))
    np.testing.assert_allclose(numer.dplus + numer.dminus, second[numer.index], rtol=0, atol=16 * numeric.U64 * term)


def test_a_parameter_without_structure_spends_no_probes(make_case):
    """linear + cross_entropy: every entry of b reaches every term, so probes could catch nothing;
    b costs 2 evaluations per entry (it took 2 n + 3 with probes)."""
    net = Network.build(make_case(name="ce", seed=2, input=[4, 5], loss="cross_entropy",
                                  layers=[{"type": "linear", "out_features": 3}]))
    for t, n in (("W", 15), ("b", 3)):
        before = net.copies
        p, numer = numerical(net, 0, t)
        assert p.method == "per-entry" and net.copies - before == 2 * n
        np.testing.assert_allclose(numer.values, plain_loop(net, 0, t, p.index), rtol=1e-7, atol=1e-9)
    one = Network.build(make_case(name="ce1", seed=2, input=[1, 5], loss="cross_entropy",
                                  layers=[{"type": "linear", "out_features": 3}]))
    p, numer = numerical(one, 0, "x")                    # one sample: x has nothing to share either
    assert p.method == "per-entry" and one.copies == 2 * 5
