"""abc_conv2d: bases, std, OLS alphas, every rule against finite differences of its own surrogate.

The references here are written independently of gradcheck_cli.layers.abc: plain loops for the
bases, scipy.linalg.lstsq / pinv for the alphas, scipy.signal.correlate2d for the convolution.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
from click.testing import CliRunner

from gradcheck_cli.check import run_case
from gradcheck_cli.cli import main
from gradcheck_cli.layers import abc
from gradcheck_cli.network import Network

ROOT = Path(__file__).resolve().parents[1]
RULES = ("eq1", "eq2", "exact", "ste_mean_std")


# ------------------------------------------------------------------------------------------
# independent references
# ------------------------------------------------------------------------------------------
def ref_std(w, kind):
    n = len(w)
    mu = sum(w) / n
    ss = sum((wi - mu) ** 2 for wi in w)
    return mu, {"population": (ss / n) ** 0.5, "sample": (ss / (n - 1)) ** 0.5, "seed": ss / n}[kind]


def ref_bases(w, M, kind):
    mu, s = ref_std(w, kind)
    u = [0.0] if M == 1 else [-1 + (m - 1) * 2 / (M - 1) for m in range(1, M + 1)]
    return np.array([[1.0 if wi - mu + um * s >= 0 else -1.0 for um in u] for wi in w]), np.array(u)


def ref_what(w, M, kind):
    """The real W_hat = B alpha, alpha by scipy's least squares (minimum norm)."""
    B, _ = ref_bases(w, M, kind)
    return B @ scipy.linalg.lstsq(B, w)[0]


def ref_conv(x, W, stride, pad):
    N, C = x.shape[:2]
    O, _, kh, kw = W.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = []
    for n in range(N):
        out.append([sum(scipy.signal.correlate2d(xp[n, c], W[o, c], mode="valid")
                        for c in range(C))[::stride, ::stride] for o in range(O)])
    return np.array(out)


def ref_surrogate(rule, w, w0, M, kind):
    """W_hat(w) of each rule's surrogate, straight from the table in notes/abcnet-eq7.md."""
    B0, u = ref_bases(w0, M, kind)
    a0 = scipy.linalg.lstsq(B0, w0)[0]
    if rule == "exact":
        return ref_what(w, M, kind)
    if rule in ("eq1", "eq7_literal"):
        return sum(a0[m] * (B0[:, m] + w - w0) for m in range(M))
    if rule == "eq2":
        a = scipy.linalg.pinv(B0) @ w
        return sum(a[m] * (B0[:, m] + w - w0) for m in range(M))
    if rule == "ste_mean_std":
        (mu, s), (mu0, s0) = ref_std(w, kind), ref_std(w0, kind)
        return sum(a0[m] * (B0[:, m] + (w - mu + u[m] * s) - (w0 - mu0 + u[m] * s0)) for m in range(M))
    raise ValueError(rule)


def central(f, w0, h=1e-5):
    g = np.empty_like(w0)
    for j in range(len(w0)):
        e = np.zeros_like(w0)
        e[j] = h
        g[j] = (f(w0 + e) - f(w0 - e)) / (2 * h)
    return g


def smooth_weights(rng, shape, M, kind, margin=1e-3):
    """Weights with every w - mean + u_m std at least ``margin`` from 0 (no sign flip within a step)."""
    while True:
        W = rng.normal(size=shape) / 3
        w = W.reshape(-1)
        mu, s = ref_std(list(w), kind)
        _, u = ref_bases(list(w), M, kind)
        if np.min(np.abs(w[:, None] - mu + u[None] * s)) > margin:
            return W


def make_layer(rule, M=3, std="population", stride=1, padding=1, O=3, k=3, bias=False):
    return abc.AbcConv2d(out_channels=O, kernel=k, stride=stride, padding=padding, bases=M, std=std,
                         backward=rule, bias=bias)


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


# ------------------------------------------------------------------------------------------
# bases, std, alphas
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("M", [1, 2, 3, 4, 5])
def test_shifts(M):
    expected = [0.0] if M == 1 else [-1 + (i - 1) * 2 / (M - 1) for i in range(1, M + 1)]
    np.testing.assert_allclose(abc.shifts(M), expected, atol=1e-15)


@pytest.mark.parametrize("kind,oracle", [("population", lambda w: np.std(w)),
                                          ("sample", lambda w: np.std(w, ddof=1)),
                                          ("seed", lambda w: np.var(w))])
def test_std_definitions(kind, oracle):
    w = np.random.default_rng(0).normal(size=17) * 3 + 1
    mu, s = abc.mean_std(w, kind)
    assert mu == pytest.approx(np.mean(w), rel=1e-14)
    assert s == pytest.approx(oracle(w), rel=1e-13)
    # d std / dw against central differences
    g = central(lambda v: abc.mean_std(v, kind)[1], w)
    np.testing.assert_allclose(abc.dstd(w, kind), g, rtol=1e-7, atol=1e-10)


def test_sign_of_zero_is_plus_one():
    w = np.array([-1.0, -1.0, 1.0, 1.0])          # mean 0, std 1: z = 0 for u = -1 and u = +1
    B = abc.bases(w, 3, "population")
    ref, _ = ref_bases(list(w), 3, "population")
    np.testing.assert_array_equal(B, ref)
    assert B[2, 0] == 1.0 and B[0, 2] == 1.0        # w - mean - std = 0 and w - mean + std = 0
    assert abc.sign(np.array([0.0, -0.0]))[0] == 1.0 and abc.sign(np.array([-0.0]))[0] == 1.0


@pytest.mark.parametrize("M", [1, 2, 3, 5])
@pytest.mark.parametrize("kind", abc.STDS)
def test_bases_and_ols_alphas_match_independent_solve(M, kind):
    W = np.random.default_rng(M).normal(size=(3, 2, 3, 3))
    a = abc.binarize(W, M, kind)
    w = W.reshape(-1)
    B, u = ref_bases(list(w), M, kind)
    np.testing.assert_array_equal(a.B.reshape(M, -1).T, B)
    np.testing.assert_allclose(a.u, u, atol=1e-15)
    np.testing.assert_allclose(a.alpha, scipy.linalg.lstsq(B, w)[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.alpha, np.linalg.lstsq(B, w, rcond=None)[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.W_hat.reshape(-1), B @ a.alpha, rtol=1e-12)
    assert not a.singular


def test_m1_is_one_base_and_mean_abs_deviation_scale():
    W = np.random.default_rng(2).normal(size=(2, 3, 2, 2))
    a = abc.binarize(W, 1)
    w = W.reshape(-1)
    B = np.where(w - w.mean() >= 0, 1.0, -1.0)
    np.testing.assert_array_equal(a.B[0].reshape(-1), B)
    assert a.alpha[0] == pytest.approx(B @ w / w.size, rel=1e-13)   # OLS with one base: <B, w> / n


def test_constant_weights_give_a_singular_system_solved_with_minimum_norm():
    W = np.full((2, 1, 2, 2), 0.3)                  # std 0: every base is sign(0) = +1
    a = abc.binarize(W, 3)
    assert a.rank == 1 and a.singular
    assert "singular" in a.singular_note()
    np.testing.assert_allclose(a.alpha, [0.1, 0.1, 0.1], rtol=1e-12)   # minimum-norm solution
    np.testing.assert_allclose(a.W_hat, W, rtol=1e-12)
    assert np.all(np.isfinite(a.P))


SINGULAR_W = np.array([-1.5, -0.5, 0.5, 1.5]).reshape(1, 1, 2, 2)   # M = 5: bases 1 = 2 and 4 = 5


def test_repeated_bases_are_singular_and_alphas_equal_lstsq():
    a = abc.binarize(SINGULAR_W, 5)
    assert a.rank == 3 and a.singular
    B, _ = ref_bases(list(SINGULAR_W.reshape(-1)), 5, "population")
    assert np.linalg.matrix_rank(B.T @ B) == 3
    np.testing.assert_allclose(a.alpha, scipy.linalg.lstsq(B, SINGULAR_W.reshape(-1))[0], atol=1e-12)


# ------------------------------------------------------------------------------------------
# each rule against finite differences of its own surrogate
# ------------------------------------------------------------------------------------------
SETUPS = [
    dict(M=3, std="population", stride=1, padding=1),
    dict(M=1, std="population", stride=2, padding=0),
    dict(M=5, std="sample", stride=1, padding=2),
    dict(M=2, std="seed", stride=2, padding=1),
]


@pytest.mark.parametrize("setup", range(len(SETUPS)))
@pytest.mark.parametrize("rule", RULES)
def test_rule_is_the_derivative_of_its_surrogate(rule, setup):
    cfg = SETUPS[setup]
    rng = np.random.default_rng(10 + setup)
    x = rng.normal(size=(2, 2, 6, 5))
    W0 = smooth_weights(rng, (3, 2, 3, 3), cfg["M"], cfg["std"])
    layer = make_layer(rule, M=cfg["M"], std=cfg["std"], stride=cfg["stride"], padding=cfg["padding"])
    R = rng.normal(size=layer.output_shape(x.shape))
    w0 = W0.reshape(-1)

    def loss(w):   # L(w) = <R, Conv(x, W_hat(w))>, everything from the references
        return np.sum(R * ref_conv(x, ref_surrogate(rule, w, w0, cfg["M"], cfg["std"]).reshape(W0.shape),
                                   cfg["stride"], cfg["padding"]))

    numerical = central(loss, w0)
    for f in ("kron", "correlation", "spray"):
        g = layer.backward(f, R, x, {"W": W0})
        assert rel(g["W"].reshape(-1), numerical) < 1e-7, (rule, f)
    # forward at W0: surrogate = real layer = reference
    layer.anchor({"W": W0})
    real = ref_conv(x, ref_what(w0, cfg["M"], cfg["std"]).reshape(W0.shape), cfg["stride"], cfg["padding"])
    np.testing.assert_allclose(layer.forward(x, {"W": W0}), real, rtol=1e-12, atol=1e-13)
    # the anchored forward at another W is the surrogate
    W1 = W0 + 1e-3 * rng.normal(size=W0.shape)
    sur = ref_conv(x, ref_surrogate(rule, W1.reshape(-1), w0, cfg["M"], cfg["std"]).reshape(W0.shape),
                   cfg["stride"], cfg["padding"])
    np.testing.assert_allclose(layer.forward(x, {"W": W1}), sur, rtol=1e-11, atol=1e-12)


def test_eq7_literal_is_alpha_squared_times_the_conv_gradient():
    rng = np.random.default_rng(5)
    x, W0 = rng.normal(size=(2, 2, 5, 5)), rng.normal(size=(3, 2, 3, 3))
    layer = make_layer("eq7_literal", M=4, padding=0)
    R = rng.normal(size=layer.output_shape(x.shape))
    w0 = W0.reshape(-1)
    B, _ = ref_bases(list(w0), 4, "population")
    alpha = scipy.linalg.lstsq(B, w0)[0]
    G = central(lambda v: np.sum(R * ref_conv(x, v.reshape(W0.shape), 1, 0)), B @ alpha)  # dL/dW_hat
    expected = sum(alpha[m] * (alpha[m] * G) for m in range(4))          # sum_m alpha_m dc/dB_m
    for f in ("kron", "correlation", "spray"):
        assert rel(layer.backward(f, R, x, {"W": W0})["W"].reshape(-1), expected) < 1e-7


def test_input_and_bias_gradients():
    rng = np.random.default_rng(6)
    x, W0, b = rng.normal(size=(2, 2, 5, 4)), rng.normal(size=(3, 2, 2, 3)), rng.normal(size=3)
    layer = abc.AbcConv2d(out_channels=3, kernel=[2, 3], stride=1, padding=1, bases=3,
                          std="population", backward="eq2", bias=True)
    R = rng.normal(size=layer.output_shape(x.shape))
    Wh = ref_what(W0.reshape(-1), 3, "population").reshape(W0.shape)
    fx = lambda v: np.sum(R * ref_conv(v.reshape(x.shape), Wh, 1, 1))  # noqa: E731
    for f in ("kron", "correlation", "spray"):
        g = layer.backward(f, R, x, {"W": W0, "b": b})
        assert rel(g["x"].reshape(-1), central(fx, x.reshape(-1))) < 1e-7, f
        np.testing.assert_allclose(g["b"], R.sum(axis=(0, 2, 3)), rtol=1e-12)


# ------------------------------------------------------------------------------------------
# through `gradcheck run`
# ------------------------------------------------------------------------------------------
def _case(make_case, rule, **over):
    layer = {"type": "abc_conv2d", "out_channels": 3, "kernel": 3, "padding": 1, "bases": 3,
             "backward": rule, **over}
    return make_case(input=[2, 2, 5, 5], layers=[layer, {"type": "tanh"}], seed=4)


@pytest.mark.parametrize("rule", RULES)
def test_run_passes_for_rules_with_a_surrogate(make_case, rule):
    result = run_case(_case(make_case, rule))
    assert result.passed, [(r.label, r.form, r.max_rel_error) for r in result.rows if not r.passed]
    w_rows = [r for r in result.rows if r.tensor == "W"]
    against = "the real forward" if rule == "exact" else f"the {rule} surrogate"
    assert len(w_rows) == 3 and all(against in r.note for r in w_rows)


def test_run_fails_eq7_literal_and_says_by_how_much(make_case):
    case = _case(make_case, "eq7_literal")
    result = run_case(case)
    assert not result.passed
    bad = [r for r in result.rows if not r.passed]
    assert {r.tensor for r in bad} == {"W"} and len(bad) == 3
    # the note's distance is ||a - n|| / ||n|| recomputed from the saved arrays
    a, n = result.arrays["layer0.W.kron.analytic"], result.arrays["layer0.W.kron.numerical"]
    assert f"rel. L2 distance {rel(a.reshape(-1), n.reshape(-1)):.3g}" in bad[0].note
    # and analytic / numerical is the scalar sum alpha^2 / sum alpha (same direction)
    net = Network.build(case)
    al = abc.binarize(net.params[0]["W"], 3).alpha
    np.testing.assert_allclose(a, (al ** 2).sum() / al.sum() * n, rtol=1e-6)


def test_singular_bases_check_passes_with_a_note(make_case, tmp_path):
    np.save(tmp_path / "w.npy", SINGULAR_W)
    layer = {"type": "abc_conv2d", "out_channels": 1, "kernel": 2, "bases": 5, "backward": "eq2",
             "params": {"W": "w.npy"}}
    result = run_case(make_case(input=[2, 1, 4, 4], layers=[layer], seed=1))
    assert result.passed
    assert all("singular (rank 3 < M = 5)" in r.note for r in result.rows if r.tensor == "W")


def test_float32_case_passes(make_case):
    case = make_case(input=[2, 2, 5, 5], dtype="float32", seed=2,
                     layers=[{"type": "abc_conv2d", "out_channels": 2, "kernel": 3, "bases": 2,
                              "backward": "eq2"}])
    assert run_case(case).passed


def test_forms_agree(make_case):
    result = run_case(_case(make_case, "ste_mean_std", stride=2, std="sample"))
    assert max(a.max_rel_diff for a in result.agreement) < 1e-12


def test_cli_exit_codes_and_saved_gradients(tmp_path):
    runner = CliRunner()
    cases = sorted((ROOT / "cases").glob("abc-*.yaml"))
    assert {c.stem for c in cases} >= {"abc-eq1", "abc-eq2", "abc-exact"}
    for c in cases:
        res = runner.invoke(main, ["run", str(c), "--format", "json"])
        assert res.exit_code == 0, (c.name, res.output[-2000:])
    res = runner.invoke(main, ["run", str(ROOT / "examples" / "abc-eq7-literal.yaml"),
                               "--save-arrays", str(tmp_path), "--format", "json"])
    assert res.exit_code == 1, res.output
    notes = [c["note"] for c in json.loads(res.output)["cases"][0]["checks"] if not c["passed"]]
    assert len(notes) == 3 and all("rel. L2 distance" in n for n in notes)
    # the saved analytic gradient equals the independent eq7_literal formula
    z = np.load(tmp_path / "abc-eq7-literal.npz")
    x, W0, R = z["input"], z["layer0.W"], z["projection"]
    from gradcheck_cli.cases import load
    opts = load(ROOT / "examples" / "abc-eq7-literal.yaml").layers[0].options
    s, p, M = opts["stride"], opts["padding"], opts["bases"]
    w0 = W0.reshape(-1)
    B, _ = ref_bases(list(w0), M, opts["std"])
    alpha = scipy.linalg.lstsq(B, w0)[0]
    G = central(lambda v: np.sum(R * ref_conv(x, v.reshape(W0.shape), s, p)), B @ alpha)
    for f in ("kron", "correlation", "spray"):
        assert rel(z[f"layer0.W.{f}.analytic"].reshape(-1), (alpha ** 2).sum() * G) < 1e-7


@pytest.mark.parametrize("layer,field", [
    ({"type": "abc_conv2d", "out_channels": 1, "kernel": 1, "std": "sample", "backward": "eq1"}, "std"),
    ({"type": "abc_conv2d", "out_channels": 1, "kernel": 1, "backward": "eq8"}, "backward"),
    ({"type": "abc_conv2d", "out_channels": 1, "kernel": 1}, "backward"),
    ({"type": "abc_conv2d", "out_channels": 1, "kernel": 1, "bases": 0, "backward": "eq1"}, "bases"),
])
def test_bad_options_are_one_line_exit_2(tmp_path, layer, field):
    import yaml

    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump({"input": [1, 1, 3, 3], "layers": [layer]}))
    res = CliRunner().invoke(main, ["run", str(f)])
    assert res.exit_code == 2
    assert f"layers[0].{field}" in res.output and "Traceback" not in res.output


# ------------------------------------------------------------------------------------------
# structure (what the numerical check may share) against brute-force perturbation
# ------------------------------------------------------------------------------------------
def _moved(f, base, delta):
    """Outputs of sample 0 that move when each entry of ``base`` moves by ``delta`` (plain loop):
    a (outputs, entries) boolean matrix."""
    y0 = f(base)
    cols = []
    for j in range(base.size):
        v = base.copy()
        v.flat[j] += delta
        cols.append(f(v) != y0)
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("rule", ("eq7_literal",) + RULES)
def test_structure_covers_brute_force_for_every_rule(make_case, rule):
    """Every declared structure holds every output that moves when one entry moves (by a big
    step and a tiny one); W claims conv2d's per-channel structure only where it is true."""
    net = Network.build(make_case(name="s", seed=4, input=[2, 2, 5, 4], loss="projection", layers=[
        {"type": "abc_conv2d", "out_channels": 3, "kernel": [2, 3], "padding": [1, 0], "stride": [1, 2],
         "bases": 3, "bias": True, "backward": rule}]))
    layer, params, x0 = net.layers[0], net.params[0], net.x0
    in_shape = x0.shape
    fx = lambda x: layer.forward(x, params)[0].reshape(-1)
    fW = lambda W: layer.forward_stacked(x0, params, "W", W[None])[0, 0].reshape(-1)
    fb = lambda b: layer.forward_stacked(x0, params, "b", b[None])[0, 0].reshape(-1)
    for name, f, base in (("x", lambda x: fx(x), x0[:1].copy()), ("W", fW, params["W"]), ("b", fb, params["b"])):
        S = layer.structure(in_shape, name)
        for delta in (0.5, 1e-5):
            moved = _moved(f, base, delta)
            assert moved.any()
            if S is None:
                continue
            declared = S.toarray()
            assert declared.shape == moved.shape
            assert not np.any(moved & ~declared), (name, delta)
    local = rule in ("eq1", "eq7_literal")
    assert (layer.structure(in_shape, "W") is None) != local
    if not local:   # the safe default is needed: one W entry moves every output channel
        moved = _moved(fW, params["W"], 1e-5)
        out_channel = np.arange(moved.shape[0]) // (moved.shape[0] // 3)
        assert len(np.unique(out_channel[moved[:, 0]])) == 3


def test_structure_colours_x_as_conv2d_does(make_case):
    from gradcheck_cli import numeric

    net = Network.build(make_case(name="s", input=[2, 3, 8, 8], loss="projection", layers=[
        {"type": "abc_conv2d", "out_channels": 4, "kernel": 3, "bases": 2, "backward": "exact"}]))
    p = numeric.plan(net, 0, "x", np.arange(net.x0.size))
    assert p.colours == 3 * 3 * 3 and p.shared           # C k^2 pairs of copies, samples shared
    assert numeric.plan(net, 0, "W", np.arange(net.params[0]["W"].size)).colours == net.params[0]["W"].size


# ------------------------------------------------------------------------------------------
# sign flips in W (rule exact): found without a parameter-side kink hook
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed, M, gap", [(0, 1, 2e-6), (1, 2, 5e-8), (4, 2, 2e-8), (2, 3, 5e-8)])
def test_every_w_entry_whose_step_flips_a_base_is_counted_as_a_kink(tmp_path, make_case, seed, M, gap):
    """One entry a hair (``gap``) from its flip: its own step flips it, and with a small gap the
    steps of other entries too (they move mean and std). A flip is a jump of the real forward,
    so the one-sided rule finds every such entry: the kink count equals the brute-force count
    of entries whose +-h step changes a base, and nothing fails. (This is why abc_conv2d has no
    parameter-side kink_distance: it would change no verdict and no count.)"""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((3, 2, 3, 3)) / 4
    w = W.reshape(-1)
    j, m = rng.integers(w.size), rng.integers(M)
    u = 0.0 if M == 1 else -1 + m * 2 / (M - 1)
    for _ in range(50):                       # fixed point: mean and std move with w_j
        mu, s = ref_std(list(w), "population")
        w[j] = mu - u * s + gap
    np.save(tmp_path / "W.npy", W)
    res = run_case(make_case(name="flip", seed=seed, input=[2, 2, 5, 5], loss="projection", layers=[{
        "type": "abc_conv2d", "out_channels": 3, "kernel": 3, "bases": M, "backward": "exact",
        "params": {"W": "W.npy"}}]))
    h = np.cbrt(np.finfo(float).eps) * np.maximum(1.0, np.abs(w))
    B0 = ref_bases(list(w), M, "population")[0]
    flips = 0
    for i in range(w.size):
        moved = []
        for sgn in (1, -1):
            v = w.copy()
            v[i] += sgn * h[i]
            moved.append(np.any(ref_bases(list(v), M, "population")[0] != B0))
        flips += any(moved)
    assert flips >= 1
    assert res.passed
    for r in (r for r in res.rows if r.tensor == "W"):
        assert r.kinks == flips and r.failed == 0, (r.form, r.kinks, flips)
