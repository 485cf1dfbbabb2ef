"""The verdict: kinks, float32, NaN/Inf, and wrong gradients that must fail where they are wrong."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gradcheck_cli import kinks
from gradcheck_cli.check import DEFAULT_TOLERANCE, run_case
from gradcheck_cli.layers.dense import Linear, ReLU, Tanh
from gradcheck_cli.network import Network
from gradcheck_cli.registry import form


def rows_of(result, **match):
    return [r for r in result.rows if all(getattr(r, k) == v for k, v in match.items())]


def save(tmp_path, name, array):
    np.save(tmp_path / name, np.asarray(array))
    return name


# ------------------------------------------------------------------------------------------
# test layers (registered per test by the temp_layer fixture)
# ------------------------------------------------------------------------------------------
class WrongW(Linear):
    """dL/dW of every form off by a relative 1e-4 at entry [1, 2]."""

    def _wrong(self, g):
        g = dict(g)
        g["W"] = g["W"].copy()
        g["W"][1, 2] *= 1 + 1e-4
        return g

    @form("kron", seed="test")
    def kron(self, dy, x, params):
        return self._wrong(super().kron(dy, x, params))

    @form("correlation", seed="test")
    def correlation(self, dy, x, params):
        return self._wrong(super().correlation(dy, x, params))

    @form("spray", seed="test")
    def spray(self, dy, x, params):
        return self._wrong(super().spray(dy, x, params))


class ShiftedReLU(ReLU):
    """A wrong ReLU: derivative taken as 1 only for x > 0.5 (wrong on 0 < x <= 0.5, smooth there)."""

    @staticmethod
    def dsigma(x):
        return (x > 0.5).astype(x.dtype)

    @form("spray", seed="test")
    def spray(self, dy, x, params):
        return {"x": np.where(x > 0.5, dy, np.zeros_like(dy))}


class HalfReLU(ReLU):
    """Subgradient 0.5 at exactly 0: lies between the one-sided derivatives 0 and 1."""

    @staticmethod
    def dsigma(x):
        return np.where(x > 0, 1.0, np.where(x == 0, 0.5, 0.0)).astype(x.dtype)

    @form("spray", seed="test")
    def spray(self, dy, x, params):
        return {"x": dy * self.dsigma(x)}


class TwoAtZeroReLU(HalfReLU):
    """Derivative 2 at exactly 0: outside [0, 1], wrong even at a kink."""

    @staticmethod
    def dsigma(x):
        return np.where(x > 0, 1.0, np.where(x == 0, 2.0, 0.0)).astype(x.dtype)


class Abs(Tanh):
    """|x| without a kink_distance hook; derivative +1 at 0 (central difference there: 0)."""

    @staticmethod
    def sigma(x):
        return np.abs(x)

    @staticmethod
    def dsigma(x):
        return np.where(x >= 0, 1.0, -1.0).astype(x.dtype)


class Float16Tanh(Tanh):
    """Correct in float64, but the float32 path squeezes the derivative through float16."""

    @staticmethod
    def dsigma(x):
        if x.dtype == np.float32:
            return (1 - np.tanh(x.astype(np.float16)) ** 2).astype(np.float32)
        return 1 - np.tanh(x) ** 2


class NaNGrad(Tanh):
    """Backward puts NaN into entry [0, 1] and Inf into [1, 0]."""

    @staticmethod
    def dsigma(x):
        d = 1 - np.tanh(x) ** 2
        d[0, 1] = np.nan
        d[1, 0] = np.inf
        return d


class LogLayer(Tanh):
    """y = log(x): the forward is NaN for x < 0."""

    @staticmethod
    def sigma(x):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log(x)

    @staticmethod
    def dsigma(x):
        with np.errstate(divide="ignore"):
            return 1 / x


# ------------------------------------------------------------------------------------------
# wrong gradients fail, where they are wrong
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relative_1e4_error_fails_in_float64_with_its_index(make_case, temp_layer, seed):
    temp_layer("wrong_w", WrongW)
    case = make_case(seed=seed, input=[6, 4], layers=[{"type": "wrong_w", "out_features": 3},
                                                       {"type": "relu"}, {"type": "linear", "out_features": 2}])
    res = run_case(case)
    assert not res.passed
    for r in rows_of(res, layer=0, tensor="W"):
        assert not r.passed and r.failed == 1 and r.worst_index == (1, 2) and r.kinks == 0
        assert r.max_rel_error == pytest.approx(1e-4, rel=0.05)
        assert [e.index for e in r.worst] == [(1, 2)]
    assert all(r.passed for r in res.rows if not (r.layer == 0 and r.tensor == "W"))


def test_wrong_relu_fails_at_smooth_points_even_with_kinks_in_the_data(tmp_path, make_case, temp_layer):
    temp_layer("shifted_relu", ShiftedReLU)
    x = np.random.default_rng(3).standard_normal((5, 8))
    x[:, :2] = 0.0                                      # kinks in the data too
    save(tmp_path, "x.npy", x)
    res = run_case(make_case(input={"data": "x.npy"}, layers=[{"type": "shifted_relu"}], loss="projection"))
    wrong = int(((x > 0) & (x <= 0.5)).sum())           # plain count: the smooth points it gets wrong
    assert wrong > 0
    for r in res.rows:
        assert not r.passed and r.failed == wrong
        assert x[r.worst_index] > 0 and x[r.worst_index] <= 0.5


@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
def test_bug_in_a_curved_layer_is_not_mistaken_for_a_kink(make_case, temp_layer, tmp_path, scale):
    temp_layer("wrong_w", WrongW)
    x = scale * np.random.default_rng(7).standard_normal((4, 5))
    save(tmp_path, "x.npy", x)
    res = run_case(make_case(input={"data": "x.npy"},
                             layers=[{"type": "wrong_w", "out_features": 4}, {"type": "tanh"},
                                     {"type": "linear", "out_features": 2}, {"type": "sigmoid"}], loss="mse"))
    for r in rows_of(res, layer=0, tensor="W"):
        assert not r.passed and r.failed == 1 and r.worst_index == (1, 2) and r.kinks == 0


# ------------------------------------------------------------------------------------------
# kinks
# ------------------------------------------------------------------------------------------
def test_relu_exactly_at_zero_in_given_data_passes_with_kinks_counted(tmp_path, make_case):
    x = np.random.default_rng(0).standard_normal((4, 6))
    x[x < 0.2] = 0.0
    save(tmp_path, "x.npy", x)
    res = run_case(make_case(input={"data": "x.npy"}, layers=[{"type": "relu"}, {"type": "linear", "out_features": 3}]))
    assert res.passed
    for r in rows_of(res, layer=0):
        assert r.kinks == int((x == 0).sum()) and r.failed == 0
    relu = next(k for k in res.kink_layers if k.layer == 0)
    assert relu.nearest == 0.0 and relu.at_kink == int((x == 0).sum())
    assert res.resampled == 0                            # given data is used as is


def test_relu_input_exactly_zero_behind_a_layer_is_a_kink_for_the_weights(tmp_path, make_case):
    """z[:, 0] = x W[:, 0] + b[0] = 0 exactly: perturbing W[:, 0] or b[0] steps across ReLU's kink.

    No layer reports this (the checked tensors are W and b), so the one-sided rule finds it.
    """
    rng = np.random.default_rng(1)
    W = rng.standard_normal((5, 3))
    W[:, 0] = 0.0
    b = np.array([0.0, 0.3, -0.2])
    save(tmp_path, "x.npy", rng.standard_normal((4, 5)))
    save(tmp_path, "W.npy", W)
    save(tmp_path, "b.npy", b)
    res = run_case(make_case(input={"data": "x.npy"},
                             layers=[{"type": "linear", "out_features": 3, "params": {"W": "W.npy", "b": "b.npy"}},
                                     {"type": "relu"}, {"type": "linear", "out_features": 2}]), mode="network")
    assert res.passed
    for r in rows_of(res, layer=0, tensor="b"):
        assert r.kinks == 1                              # b[0]
    for r in rows_of(res, layer=0, tensor="W"):
        assert r.kinks >= 1                              # entries of W[:, 0] whose x makes a crossing
    for r in rows_of(res, layer=1):
        assert r.kinks == 4                              # the relu's own input: column 0, 4 samples


def test_user_layer_kink_without_hook_found_by_one_sided_rule(tmp_path, make_case, temp_layer):
    temp_layer("absval", Abs)
    x = np.random.default_rng(2).standard_normal((3, 4))
    x[0, :] = 0.0
    save(tmp_path, "x.npy", x)
    res = run_case(make_case(input={"data": "x.npy"}, layers=[{"type": "absval"}], loss="projection"))
    # +1 at 0 fails the central test (0) but lies between the one-sided derivatives -1 and +1
    assert res.passed
    for r in res.rows:
        assert r.kinks == 4 and r.failed == 0 and r.max_abs_error < 1e-8


def test_subgradient_between_one_sided_passes_and_outside_fails(tmp_path, make_case, temp_layer):
    temp_layer("half_relu", HalfReLU)
    temp_layer("two_relu", TwoAtZeroReLU)
    x = np.random.default_rng(4).standard_normal((3, 5))
    x[1, 2] = x[2, 4] = 0.0
    save(tmp_path, "x.npy", x)
    ok = run_case(make_case(input={"data": "x.npy"}, layers=[{"type": "half_relu"}]))
    assert ok.passed and all(r.kinks == 2 for r in ok.rows)
    bad = run_case(make_case(input={"data": "x.npy"}, layers=[{"type": "two_relu"}]))
    for r in bad.rows:
        assert not r.passed and r.failed == 2 and r.worst_index in ((1, 2), (2, 4))


def test_generated_inputs_keep_the_margin(make_case):
    case = make_case(seed=3, input=[16, 12], layers=[
        {"type": "linear", "out_features": 40}, {"type": "relu"},
        {"type": "linear", "out_features": 40}, {"type": "relu"}, {"type": "relu"}])
    before = Network.build(case)
    d0 = kinks.distances(before, before.forward())
    net = Network.build(case)
    moved, margins = kinks.keep_margin(net)
    xs = net.forward()
    report = kinks.report(net, xs, margins)
    # layer 4 is a relu fed by a relu: its exact zeros are structural and stay
    assert {k.layer for k in report} == {1, 3, 4}
    for k in report:
        dist = kinks.distances(net, xs)[k.layer]
        margin = kinks.KINK_MARGIN * np.sqrt(np.mean(before.forward()[k.layer] ** 2))
        assert not ((dist > 0) & (dist < margin)).any(), k
        assert k.margin == pytest.approx(margin) and k.within_margin == k.at_kink
    assert report[-1].at_kink > 0 and report[-1].nearest == 0.0
    # the draw had near entries, so some samples moved; the others are untouched
    had_near = sum(((d > 0) & (d < kinks.KINK_MARGIN * np.sqrt(np.mean(x ** 2)))).reshape(16, -1).any(1)
                   for d, x in zip(d0, before.forward()) if d is not None)
    assert moved == int(np.count_nonzero(had_near))
    same = np.all(net.x0 == before.x0, axis=1)
    assert int((~same).sum()) == moved


def test_margin_passes_a_deep_relu_network_without_counting_kinks(make_case):
    res = run_case(make_case(seed=5, input=[8, 10], layers=[
        {"type": "linear", "out_features": 16}, {"type": "relu"},
        {"type": "linear", "out_features": 16}, {"type": "relu"}, {"type": "linear", "out_features": 3}],
        loss="mse"))
    assert res.passed and sum(r.kinks for r in res.rows) == 0


# ------------------------------------------------------------------------------------------
# float32
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_correct_float32_network_passes(make_case, seed):
    res = run_case(make_case(seed=seed, dtype="float32", input=[8, 12], layers=[
        {"type": "linear", "out_features": 20}, {"type": "relu"}, {"type": "linear", "out_features": 20},
        {"type": "tanh"}, {"type": "linear", "out_features": 4}, {"type": "sigmoid"}], loss="mse"))
    assert res.passed, [(r.label, r.form, r.note) for r in res.rows if not r.passed]
    assert (res.rtol, res.atol) == DEFAULT_TOLERANCE["float32"]


def test_correct_float32_conv_passes(make_case):
    res = run_case(make_case(seed=1, dtype="float32", input=[2, 3, 7, 7], layers=[
        {"type": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1}, {"type": "relu"},
        {"type": "conv2d", "out_channels": 2, "kernel": 3}, {"type": "flatten"},
        {"type": "linear", "out_features": 3}], loss="cross_entropy"))
    assert res.passed, [(r.label, r.form, r.note) for r in res.rows if not r.passed]


def test_float32_large_gradients_with_cancellation_pass(tmp_path, make_case):
    """Gradients of size ~1e3 whose small entries cancel: a fixed atol alone is not enough."""
    save(tmp_path, "x.npy", 30 * np.random.default_rng(5).standard_normal((32, 20)))
    res = run_case(make_case(dtype="float32", input={"data": "x.npy"}, loss="sum", layers=[
        {"type": "linear", "out_features": 30}, {"type": "linear", "out_features": 30},
        {"type": "linear", "out_features": 5}]))
    assert res.passed, [(r.label, r.form, r.note) for r in res.rows if not r.passed]
    assert max(abs(a).max() for k, a in res.arrays.items() if k.endswith("analytic")) > 100


def test_failure_only_in_float32_says_so(make_case, temp_layer):
    temp_layer("f16_tanh", Float16Tanh)
    layers = [{"type": "linear", "out_features": 6}, {"type": "f16_tanh"}, {"type": "linear", "out_features": 2}]
    r32 = run_case(make_case(seed=2, dtype="float32", input=[4, 5], layers=layers))
    assert not r32.passed
    failing = [r for r in r32.rows if not r.passed]
    assert failing and all("fails only in float32" in r.note for r in failing)
    assert run_case(make_case(seed=2, dtype="float64", input=[4, 5], layers=layers)).passed


def test_float32_failure_in_the_math_says_float64_fails_too(make_case, temp_layer):
    temp_layer("wrong_w", WrongW)
    res = run_case(make_case(seed=0, dtype="float32", input=[4, 5], layers=[{"type": "wrong_w", "out_features": 3}]))
    # 1e-4 relative is below float32's rtol: passes in float32 ...
    assert res.passed
    temp_layer("shifted_relu", ShiftedReLU)
    res = run_case(make_case(seed=0, dtype="float32", input=[6, 8], layers=[{"type": "shifted_relu"}]))
    failing = [r for r in res.rows if not r.passed]
    assert failing and all("fails in float64 too" in r.note for r in failing)


# ------------------------------------------------------------------------------------------
# NaN / Inf
# ------------------------------------------------------------------------------------------
def test_nan_and_inf_in_the_gradient_fail_and_are_named(make_case, temp_layer):
    temp_layer("nan_grad", NaNGrad)
    res = run_case(make_case(input=[3, 4], layers=[{"type": "nan_grad"}]))
    assert not res.passed
    for r in res.rows:
        assert not r.passed and r.failed >= 2 and "NaN/Inf" in r.note
        assert r.worst_index in ((0, 1), (1, 0))
    doc = json.loads(json.dumps(res.to_json()))          # strict JSON: NaN written as a string
    assert doc["checks"][0]["max_abs_error"] == "nan"


def test_nan_in_the_forward_fails_and_is_named(tmp_path, make_case, temp_layer):
    temp_layer("log_layer", LogLayer)
    x = np.abs(np.random.default_rng(0).standard_normal((3, 4))) + 0.5
    x[2, 3] = -1.0
    save(tmp_path, "x.npy", x)
    res = run_case(make_case(input={"data": "x.npy"}, layers=[{"type": "log_layer"}], loss="sum"))
    assert not res.passed
    for r in res.rows:
        assert not r.passed and "NaN/Inf" in r.note


def test_nan_never_passes_even_with_huge_tolerance(make_case, temp_layer):
    temp_layer("nan_grad", NaNGrad)
    res = run_case(make_case(input=[3, 4], layers=[{"type": "nan_grad"}], tolerance={"rtol": 1e6, "atol": 1e6}))
    assert not res.passed and all(r.failed == 2 for r in res.rows)


# ------------------------------------------------------------------------------------------
# max-pool ties and the kink cases shipped in cases/
# ------------------------------------------------------------------------------------------
from pathlib import Path  # noqa: E402

from gradcheck_cli.cases import load  # noqa: E402
from gradcheck_cli.layers.pool import MaxPool2d  # noqa: E402

CASES = Path(__file__).resolve().parents[1] / "cases"


def _tied_first(x, k):
    """(N, C, Ho, Wo) mask of windows whose max is tied, and the first argmax: plain loops."""
    N, C, H, W = x.shape
    Ho, Wo = H // k, W // k
    tied = np.zeros((N, C, Ho, Wo), bool)
    first = np.zeros((N, C, Ho, Wo, 2), int)
    for n in range(N):
        for c in range(C):
            for p in range(Ho):
                for q in range(Wo):
                    win = x[n, c, p * k:(p + 1) * k, q * k:(q + 1) * k]
                    hits = [(r, s) for r in range(k) for s in range(k) if win[r, s] == win.max()]
                    tied[n, c, p, q] = len(hits) > 1
                    first[n, c, p, q] = (p * k + hits[0][0], q * k + hits[0][1])
    return tied, first


class TieDoublingPool(MaxPool2d):
    """Routes 2 dy to the first maximum of a tied window (outside [0, dy]): wrong only at ties."""

    def _double(self, g, dy, x):
        tied, first = _tied_first(x, self.k[0])
        dx = g["x"].copy()
        for n, c, p, q in np.argwhere(tied):
            r, s = first[n, c, p, q]
            dx[n, c, r, s] += dy[n, c, p, q]
        return {"x": dx}

    @form("kron", seed="test")
    def kron(self, dy, x, params):
        return self._double(super().kron(dy, x, params), dy, x)

    @form("spray", seed="test")
    def spray(self, dy, x, params):
        return self._double(super().spray(dy, x, params), dy, x)


def test_tied_maxpool_windows_pass_with_kinks_counted():
    res = run_case(load(CASES / "maxpool-ties.yaml"))
    assert res.passed
    x = np.load(CASES / "data" / "pool-ties-x.npy")
    tied, _ = _tied_first(x, 2)
    assert tied.sum() >= 5
    # every entry holding a tied maximum is a kink: max-pool's kink_distance is 0 there
    win = x.reshape(2, 2, 3, 2, 3, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 2, 3, 3, 4)
    on_tie = (win == win.max(-1, keepdims=True)).sum(-1) * tied
    assert on_tie.sum() >= 10
    for r in rows_of(res, layer=0):
        assert r.kinks == on_tie.sum() and r.failed == 0


def test_wrong_gradient_at_ties_fails_at_exactly_the_tied_windows(tmp_path, make_case, temp_layer):
    temp_layer("tie_doubling_pool", TieDoublingPool)
    x = np.load(CASES / "data" / "pool-ties-x.npy")
    np.save(tmp_path / "x.npy", x)
    res = run_case(make_case(input={"data": "x.npy"}, loss="projection",
                             layers=[{"type": "tie_doubling_pool", "size": 2}]))
    tied, first = _tied_first(x, 2)
    expected = {tuple([n, c, *first[n, c, p, q]]) for n, c, p, q in np.argwhere(tied)}
    for r in res.rows:
        assert not r.passed and r.failed == len(expected)
        assert {e.index for e in r.worst} <= expected and r.worst_index in expected


def test_structural_maxpool_ties_after_relu_pass():
    res = run_case(load(CASES / "relu-pool-generated.yaml"))
    assert res.passed
    assert all(r.kinks > 0 for r in rows_of(res, type="maxpool2d"))
    assert any(k.at_kink > 0 for k in res.kink_layers)


def test_relu_at_zero_case_counts_every_zero():
    res = run_case(load(CASES / "relu-at-zero.yaml"))
    x = np.load(CASES / "data" / "relu-zero-x.npy")
    assert res.passed
    assert all(r.kinks == int((x == 0).sum()) for r in rows_of(res, layer=0))


def test_float32_conv_case_passes():
    res = run_case(load(CASES / "conv-float32.yaml"))
    assert res.passed and res.dtype == "float32" and (res.rtol, res.atol) == DEFAULT_TOLERANCE["float32"]


@pytest.mark.parametrize("size, stride", [(2, None), (3, 2), ((2, 3), (1, 2)), (1, None)])
def test_maxpool_kink_distance_matches_loops(size, stride):
    layer = MaxPool2d(size=size, stride=stride)
    x = np.round(np.random.default_rng(0).standard_normal((2, 2, 7, 8)) * 2) / 2   # many ties
    (kh, kw), (sh, sw) = layer.k, layer.s
    ref = np.full(x.shape, np.inf)
    for n, c in np.ndindex(2, 2):
        for p in range((7 - kh) // sh + 1):
            for q in range((8 - kw) // sw + 1):
                flat = x[n, c, p * sh:p * sh + kh, q * sw:q * sw + kw].reshape(-1)
                first = int(np.argmax(flat))
                for k in range(flat.size if flat.size > 1 else 0):
                    gap = flat.max() - (np.delete(flat, k).max() if k == first else flat[k])
                    r, s = p * sh + k // kw, q * sw + k % kw
                    ref[n, c, r, s] = min(ref[n, c, r, s], gap)
    assert np.array_equal(layer.kink_distance(x, {}), ref)


def test_relu_kink_distance_is_abs():
    x = np.array([[-2.0, 0.0, 1e-9, 3.0]])
    assert np.array_equal(ReLU().kink_distance(x, {}), np.abs(x))


def test_abc_sign_flip_at_exactly_zero_passes_as_kinks(tmp_path, make_case):
    """W - mean(W) = 0 exactly at two entries: any step of any W_j moves the mean and flips their
    sign(0) = +1 one way, a jump in the real forward. The side without the flip is clean."""
    W = np.array([0.0, 0.5, -0.5, 1.25, -1.25, 0.75, -0.75, 0.0]).reshape(2, 1, 2, 2)
    assert W.mean() == 0.0
    np.save(tmp_path / "W.npy", W)
    res = run_case(make_case(input=[2, 1, 4, 4], layers=[{
        "type": "abc_conv2d", "out_channels": 2, "kernel": 2, "bases": 1, "backward": "exact",
        "params": {"W": "W.npy"}}]))
    assert res.passed
    for r in rows_of(res, tensor="W"):
        assert r.kinks == W.size and r.failed == 0
    for r in rows_of(res, tensor="x"):
        assert r.kinks == 0


# ------------------------------------------------------------------------------------------
# properties (hypothesis, few examples: each is a full check)
# ------------------------------------------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPS = settings(max_examples=30, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@PROPS
@given(seed=st.integers(0, 2**16), zeros=st.floats(0.0, 0.8), width=st.integers(2, 6),
       dtype=st.sampled_from(["float64", "float32"]))
def test_correct_relu_networks_on_data_with_zeros_always_pass(tmp_path_factory, seed, zeros, width, dtype):
    """Given data with a random share of exact zeros (ReLU kinks), a zero bias entry and a zero
    weight column (a ReLU input at 0 for every sample): the built-in layers always pass."""
    from gradcheck_cli.cases import from_dict

    d = tmp_path_factory.mktemp("p")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, width))
    x[rng.random(x.shape) < zeros] = 0.0
    W = rng.standard_normal((width, 4))
    W[:, 1] = 0.0
    b = rng.standard_normal(4)
    b[1] = 0.0
    for name, a in (("x", x), ("W", W), ("b", b)):
        np.save(d / f"{name}.npy", a)
    case = from_dict({"seed": seed, "dtype": dtype, "input": {"data": "x.npy"}, "loss": "mse", "layers": [
        {"type": "relu"}, {"type": "linear", "out_features": 4, "params": {"W": "W.npy", "b": "b.npy"}},
        {"type": "relu"}, {"type": "relu"}, {"type": "linear", "out_features": 2}]}, str(d / "c.yaml"), base_dir=d)
    res = run_case(case)
    assert res.passed, [(r.label, r.form, r.failed, r.note) for r in res.rows if not r.passed]
    assert all(r.kinks == int((x == 0).sum()) for r in rows_of(res, layer=0))


@PROPS
@given(seed=st.integers(0, 2**16), k=st.integers(0, 11), rel=st.sampled_from([1e-4, -1e-4, 3e-3]))
def test_a_relative_error_at_any_smooth_entry_of_a_kinked_net_fails_there(tmp_path_factory, seed, k, rel):
    """ReLU kinks in the data do not hide a 1e-4 relative error in another tensor's entry k."""
    from gradcheck_cli import registry
    from gradcheck_cli.cases import from_dict

    class Off(Linear):
        @form("correlation", seed="test")
        def correlation(self, dy, x, params):
            g = super().correlation(dy, x, params)
            g["W"] = g["W"].copy()
            g["W"].reshape(-1)[k] *= 1 + rel
            return g

    d = tmp_path_factory.mktemp("q")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 4))
    x[rng.random(x.shape) < 0.4] = 0.0
    np.save(d / "x.npy", x)
    registry.register("off_linear")(Off)
    try:
        res = run_case(from_dict({"seed": seed, "input": {"data": "x.npy"}, "forms": ["correlation"], "layers": [
            {"type": "relu"}, {"type": "off_linear", "out_features": 3}, {"type": "tanh"}]},
            str(d / "c.yaml"), base_dir=d))
    finally:
        del registry.LAYERS["off_linear"]
    W_row = rows_of(res, layer=1, tensor="W")[0]
    a = res.arrays["layer1.W.correlation.analytic"].reshape(-1)
    if abs(a[k]) < 0.05 * np.abs(a).max(initial=0.0) or a[k] == 0:   # not "ordinary" (e.g. relu(x) = 0)
        return
    assert not W_row.passed and W_row.failed == 1
    assert W_row.worst_index == tuple(int(v) for v in np.unravel_index(k, (4, 3)))
    assert all(r.passed for r in res.rows if r is not W_row)


def test_json_is_strict_even_with_inf_distances_and_nan_gradients(make_case, temp_layer):
    import json

    temp_layer("nan_grad", NaNGrad)
    res = run_case(make_case(input=[2, 1, 3, 3], layers=[{"type": "maxpool2d", "size": 1},
                                                         {"type": "flatten"}, {"type": "nan_grad"}]))
    text = json.dumps(res.to_json(), allow_nan=False)     # raises on NaN / Infinity
    doc = json.loads(text)
    assert doc["kink_distance"]["layers"][0]["nearest"] == "inf"
    assert not doc["passed"]


def test_a_case_s_shapes_are_worked_out_once_and_its_layers_made_once_per_run(make_case, temp_layer):
    """Validation works out the shapes; the preflight's layer instances are the network's."""
    made, shaped = [], []

    class CountedTanh(Tanh):
        def __init__(self, **options):
            super().__init__(**options)
            made.append(self)

        def output_shape(self, in_shape):
            shaped.append(in_shape)
            return super().output_shape(in_shape)

    temp_layer("test-counted-tanh", CountedTanh)
    case = make_case(name="once", input=[2, 3], layers=[{"type": "test-counted-tanh"}], loss="sum")
    assert len(shaped) == 1 and len(made) == 1            # validation
    res = run_case(case, memory_limit=2**32)
    assert res.passed
    assert len(shaped) == 1 and len(made) == 2            # the run: one instance, no shape work


def test_composition_direction_through_several_kinks_of_one_sample_is_not_a_false_failure(tmp_path):
    """Found by the property above (seed 386): exact zeros at two ReLUs of one sample whose slope
    changes cancel in the one-sided gap (sum |d_j| g_j ~ 0) but not in the central difference
    (sum d_j g_j / 2). The layers' kink distances say the direction crosses kinks."""
    from gradcheck_cli.cases import from_dict

    rng = np.random.default_rng(386)
    x = rng.standard_normal((3, 3))
    x[rng.random(x.shape) < 0.75] = 0.0
    W = rng.standard_normal((3, 4))
    W[:, 1] = 0.0
    b = rng.standard_normal(4)
    b[1] = 0.0
    for name, a in (("x", x), ("W", W), ("b", b)):
        np.save(tmp_path / f"{name}.npy", a)
    case = from_dict({"seed": 386, "input": {"data": "x.npy"}, "loss": "mse", "layers": [
        {"type": "relu"}, {"type": "linear", "out_features": 4, "params": {"W": "W.npy", "b": "b.npy"}},
        {"type": "relu"}, {"type": "relu"}, {"type": "linear", "out_features": 2}]},
        str(tmp_path / "c.yaml"), base_dir=tmp_path)
    res = run_case(case)
    assert res.passed, [(c.form, c.direction, c.rel_error) for c in res.composition if not c.passed]
    assert all(c.note.startswith("inconclusive") for c in res.composition)
