"""The coloured full-mode comparison (torch/pattern.py, torch/coloured.py): the probed pattern is
the Jacobian's, a correct function passes without the dense comparison, and every kind of wrong
backward is refused here and caught by the dense verdict."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch drop-in needs torch")

from gradcheck_cli.torch import GradcheckError, coloured, dropin, gradcheck, pattern  # noqa: E402
from gradcheck_cli.torch.jacobian import Problem  # noqa: E402

F = torch.nn.functional


def _conv_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 9, 9, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    return x, w


def _array(P):
    a = np.zeros((P.M, P.n), dtype=bool)
    a[P.o, P.j] = True
    return a


def _dense_pattern(f, inputs, i):
    J = torch.autograd.functional.jacobian(f, inputs)[i]
    return (J.reshape(J.shape[:J.dim() - inputs[i].dim()].numel(), -1) != 0).numpy()


@pytest.mark.parametrize("i", [0, 1])
def test_probed_pattern_of_a_convolution_is_its_jacobians(i):
    x, w = _conv_inputs()
    p = Problem(F.conv2d, (x, w), F.conv2d(x, w))
    P = pattern.probe(p, i, 1e-6, 10**7)
    assert np.array_equal(_array(P), _dense_pattern(F.conv2d, (x, w), i))


@pytest.mark.parametrize("f, shape", [
    (lambda a: a.cumsum(1), (6, 7)),
    (lambda a: a.reshape(3, -1).T.exp(), (6, 7)),
    (lambda a: a.sort(dim=-1).values, (5, 9)),
    (lambda a: F.softmax(a, dim=0) * a.sum(), (4, 5, 3)),
])
def test_probed_pattern_covers_the_jacobian(f, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64,
                    requires_grad=True)
    p = Problem(f, (x,), f(x))
    P = _array(pattern.probe(p, 0, 1e-6, 10**7))
    D = _dense_pattern(f, (x,), 0)
    assert not (D & ~P).any()


def test_a_pattern_too_large_for_the_budget_is_refused():
    x = torch.randn(30, 30, dtype=torch.float64, requires_grad=True)
    f = torch.linalg.inv
    p = Problem(f, (x,), f(x))
    assert pattern.probe(p, 0, 1e-6, 1000) is None      # dense: 810,000 entries


def test_a_correct_convolution_is_decided_without_the_dense_comparison(monkeypatch):
    x, w = _conv_inputs()
    monkeypatch.setattr(coloured, "DENSE_MAX", 0)
    p = Problem(F.conv2d, (x, w), F.conv2d(x, w))
    assert coloured.agree(p, 1e-6, 1e-3, 1e-5)

    def no_dense(*a, **k):
        raise AssertionError("the dense comparison ran")
    monkeypatch.setattr(dropin, "compare", no_dense)
    assert gradcheck(F.conv2d, (x, w))
    assert gradcheck(F.conv2d, (x, w), check_batched_grad=True)   # torch's other checks still run


def _conv_with(bug):
    class Conv(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return F.conv2d(x, w)

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            gx, gw = torch.ops.aten.convolution_backward(
                g, x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, False])[:2]
            return bug(gx, gw)
    return Conv.apply


def _moved(t, at, by):
    t = t.clone()
    t[at] += by
    return t


BUGS = {
    "leak outside the pattern": (lambda gx, gw: (gx + 1e-3 * torch.roll(gx, 5, -1), gw), [0]),
    "one weight entry": (lambda gx, gw: (gx, _moved(gw, (1, 2, 0, 1), 0.01)), [1]),
    "flipped": (lambda gx, gw: (gx.flip(-1), gw), [0]),
    "scaled 1%": (lambda gx, gw: (gx * 1.01, gw), [0]),
    "transposed kernel": (lambda gx, gw: (gx, gw.transpose(-1, -2)), [1]),
}


@pytest.mark.parametrize("name", list(BUGS))
def test_every_kind_of_wrong_backward_goes_to_the_dense_verdict(name, monkeypatch):
    bug, wrong = BUGS[name]
    monkeypatch.setattr(coloured, "DENSE_MAX", 0)
    x, w = _conv_inputs(2)
    f = _conv_with(bug)
    assert not coloured.agree(Problem(f, (x, w), f(x, w)), 1e-6, 1e-3, 1e-5)
    with pytest.raises(GradcheckError) as e:
        gradcheck(f, (x, w))
    assert e.value.inputs == wrong


def test_a_pattern_that_misses_entries_costs_time_not_the_verdict(monkeypatch):
    """A probe that sees only the diagonal of a dense Jacobian: the coloured side finds nonzeros
    where the pattern has none, and the dense comparison decides (here: a pass)."""
    monkeypatch.setattr(coloured, "DENSE_MAX", 0)
    diagonal = lambda p, i, h, m: pattern.Pattern(np.arange(p.M), np.arange(p.M), p.M, p.M)  # noqa: E731
    monkeypatch.setattr(pattern, "probe", diagonal)
    x = torch.randn(40, dtype=torch.float64, requires_grad=True)
    f = lambda a: a * a.sum()     # noqa: E731
    assert not coloured.agree(Problem(f, (x,), f(x)), 1e-6, 1e-3, 1e-5)
    assert gradcheck(f, (x,))


def test_a_kink_on_the_pattern_passes_as_in_the_dense_comparison(monkeypatch):
    monkeypatch.setattr(coloured, "DENSE_MAX", 0)
    x = torch.tensor([[0.0, 1.0, -2.0, 0.0]] * 3, dtype=torch.float64, requires_grad=True)
    assert coloured.agree(Problem(torch.abs, (x,), torch.abs(x)), 1e-6, 1e-3, 1e-5)


def test_long_dimensions_are_probed_as_two():
    assert pattern.virtual_shape((8000,)) == (80, 100)
    assert pattern.virtual_shape((4, 3, 16, 16)) == (4, 3, 16, 16)       # under SPLIT: as they are
    assert pattern.virtual_shape((127, 64)) == (127, 8, 8)              # a prime stays whole


def test_a_sort_of_a_long_vector_is_probed_in_sqrt_slices_and_its_pattern_is_a_permutation():
    g = torch.Generator().manual_seed(3)
    x = (torch.randperm(900, generator=g).double() + 0.5).requires_grad_()
    f = lambda a: a.sort().values      # noqa: E731
    p = Problem(f, (x,), f(x))
    calls = []
    real_perturbed = p.perturbed
    p.perturbed = lambda i, d: calls.append(len(d)) or real_perturbed(i, d)
    P = pattern.probe(p, 0, 1e-6, 10**7)
    assert sum(calls) == 2 * (30 + 30) + 1                 # not 2 x 900 + 1
    assert len(P.o) == 900 and np.array_equal(np.sort(P.j), np.arange(900))


def test_a_leak_outside_the_pattern_smaller_than_rtol_is_not_hidden_in_its_partner(monkeypatch):
    """An elementwise function whose backward leaks 2e-4 of each entry into its neighbour: the
    leaked entries are outside the (diagonal) pattern, every one summed with a diagonal entry
    in the one row colour. Judged with torch's rtol |n| they would hide there (2e-4 < 1e-3);
    the coloured side's own tolerance sends them to the dense comparison, which names them."""
    monkeypatch.setattr(coloured, "DENSE_MAX", 0)

    class LeakySin(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.sin()

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            gx = g * x.cos()
            return gx + 2e-4 * torch.roll(gx, 1, -1)

    x = (torch.rand(6, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64) - 0.5)
    x.requires_grad_()         # |cos x| > 0.87: rtol |cos x| > 8.7e-4 > every leak's 4e-4
    assert not coloured.agree(Problem(LeakySin.apply, (x,), LeakySin.apply(x)), 1e-6, 1e-3, 1e-5)
    with pytest.raises(GradcheckError) as e:
        gradcheck(LeakySin.apply, (x,))
    assert e.value.inputs == [0]
