"""The torch drop-in's forward-mode keywords: check_forward_ad, check_batched_forward_grad,
check_backward_ad=False, and gradgradcheck's check_fwd_over_rev (gradcheck_cli/torch/forward.py)."""
from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch", reason="the torch drop-ins need PyTorch")

from gradcheck_cli.torch import GradcheckError, gradcheck, gradgradcheck  # noqa: E402

TG = sys.modules["torch.autograd.gradcheck"]


def product(jvp_second: float = 1.0, grad_second: float = 1.0, with_jvp: bool = True):
    """An autograd.Function (alpha x w, sin(x + w)) of two tensors and a float; the jvp's
    contribution of w is scaled by ``jvp_second``, the backward's gradient of w by
    ``grad_second`` (1.0 = correct)."""

    class Product(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, alpha):
            ctx.save_for_backward(x, w)
            ctx.save_for_forward(x, w)
            ctx.alpha = alpha
            return alpha * x * w, torch.sin(x + w)

        @staticmethod
        def backward(ctx, g1, g2):
            x, w = ctx.saved_tensors
            c = torch.cos(x + w) * g2
            return ctx.alpha * w * g1 + c, (ctx.alpha * x * g1 + c) * grad_second, None

    if with_jvp:
        def jvp(ctx, tx, tw, _):
            x, w = ctx.saved_tensors
            return (ctx.alpha * (tx * w + x * tw * jvp_second),
                    torch.cos(x + w) * (tx + tw * jvp_second))
        Product.jvp = staticmethod(jvp)
    return Product


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    return x, w, 0.5


@pytest.mark.parametrize("fast_mode", [False, True])
def test_a_correct_jvp_passes_as_with_torch(fast_mode):
    f = product().apply
    assert gradcheck(f, _inputs(), check_forward_ad=True, fast_mode=fast_mode)
    assert gradcheck(f, _inputs(), check_forward_ad=True, check_backward_ad=False,
                     check_batched_forward_grad=True, fast_mode=fast_mode)
    assert TG.gradcheck(f, _inputs(), check_forward_ad=True, check_batched_forward_grad=True,
                        fast_mode=fast_mode)


@pytest.mark.parametrize("fast_mode", [False, True])
def test_a_wrong_jvp_fails_and_names_its_input(fast_mode):
    f = product(jvp_second=1.01).apply
    assert gradcheck(f, _inputs(), fast_mode=fast_mode)          # the backward is right
    with pytest.raises(TG.GradcheckError) as info:
        gradcheck(f, _inputs(), check_forward_ad=True, fast_mode=fast_mode)
    e = info.value
    assert isinstance(e, GradcheckError) and e.inputs == [1]
    lines = str(e).splitlines()
    assert lines[0] == "gradcheck (forward AD): Jacobian mismatch for inputs[1]"
    assert "inputs[0]" not in "\n".join(lines[1:])
    assert "output[0]" in str(e) and "analytic" in str(e) and "numerical" in str(e)
    assert "every entry of the Jacobian (288 entries)" in str(e)   # the columns, in fast mode too
    assert not TG.gradcheck(f, _inputs(), check_forward_ad=True, fast_mode=fast_mode,
                            raise_exception=False)
    assert gradcheck(f, _inputs(), check_forward_ad=True, fast_mode=fast_mode,
                     raise_exception=False) is False


@pytest.mark.parametrize("fast_mode", [False, True])
def test_past_the_budget_random_tangents_against_every_output_entry(fast_mode, monkeypatch):
    """J u for seeded unit tangents u, every output entry: a 1e-2 error in one output entry of
    a 300 x 300 block is caught and named, in full mode over a lowered budget, in fast mode as
    a large input (there a failing tangent is followed by every entry, which the table names)."""
    from gradcheck_cli.torch import forward
    if not fast_mode:
        monkeypatch.setattr(forward, "BUDGET", 1000)

    class OneEntry(torch.autograd.Function):
        @staticmethod
        def forward(a, x):
            return a * x.sin()

        @staticmethod
        def jvp(ctx, ta, tx):
            a, x = ctx.saved_for_jvp
            t = ta * x.sin() + a * x.cos() * tx
            return t + torch.zeros_like(t).index_fill_(0, torch.tensor([7]), 1e-2 * t.abs().max())

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.saved_for_jvp = inputs

    g = torch.Generator().manual_seed(3)
    a = torch.randn(1, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(300, generator=g, dtype=torch.float64, requires_grad=True)
    with pytest.raises(GradcheckError) as info:
        gradcheck(OneEntry.apply, (a, x), check_forward_ad=True, check_backward_ad=False,
                  fast_mode=fast_mode)
    msg = str(info.value)
    assert info.value.inputs == [0, 1] and "output[0][7]" in msg
    assert ("seeded random unit tangents" in msg) == (not fast_mode)


def test_check_backward_ad_false_runs_the_forward_check_alone():
    f = product(grad_second=1.01).apply           # wrong backward, right jvp
    assert gradcheck(f, _inputs(), check_forward_ad=True, check_backward_ad=False,
                     check_undefined_grad=False)
    with pytest.raises(GradcheckError) as info:
        gradcheck(f, _inputs(), check_forward_ad=True)
    assert info.value.inputs == [1] and "forward AD" not in str(info.value).splitlines()[0]


def test_a_function_without_jvp_raises_as_torch_does():
    f = product(with_jvp=False).apply
    for tool in (gradcheck, TG.gradcheck):
        with pytest.raises(NotImplementedError, match="jvp"):
            tool(f, _inputs(), check_forward_ad=True, raise_exception=False)


def test_inconsistent_mode_keywords_raise_torchs_assertion():
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    for kw in (dict(check_backward_ad=False), dict(check_batched_forward_grad=True),
               dict(check_forward_ad=True, check_backward_ad=False, check_batched_grad=True)):
        with pytest.raises(AssertionError):
            TG.gradcheck(torch.sin, x, **kw)
        with pytest.raises(AssertionError):
            gradcheck(torch.sin, x, **kw)
    with pytest.raises(AssertionError):
        gradgradcheck(torch.sin, x, check_rev_over_rev=False)     # check_undefined_grad needs it


def test_complex_inputs_and_outputs():
    z = torch.randn(3, 2, dtype=torch.complex128, requires_grad=True,
                    generator=torch.Generator().manual_seed(1))
    for f in (torch.sin, torch.abs, torch.fft.fft):
        assert gradcheck(f, z, check_forward_ad=True, check_backward_ad=False,
                         check_batched_forward_grad=True)


def test_batched_forward_grad_fails_where_torchs_fails():
    """A forward-differentiable view whose batched tangent torch cannot lay out: both refuse."""
    z = torch.randn(3, dtype=torch.complex128, requires_grad=True)

    def f(z):
        return z * z.conj(), z.real
    assert gradcheck(f, z, check_forward_ad=True)
    for tool in (gradcheck, TG.gradcheck):
        with pytest.raises(TG.GradcheckError, match="batched"):
            tool(f, z, check_forward_ad=True, check_batched_forward_grad=True)


def test_a_jvp_wrong_only_when_vmapped_fails_the_batched_check():
    batched = getattr(torch._C._functorch, "is_legacy_batchedtensor", None)
    if batched is None:
        pytest.skip("this torch has no legacy batched tensors to tell apart")

    class WrongBatched(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def jvp(ctx, t):
            return 3 * t if batched(t) else 2 * t        # a wrong batching of a right jvp

    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    kw = dict(check_forward_ad=True, check_backward_ad=False, check_undefined_grad=False)
    assert gradcheck(WrongBatched.apply, x, **kw)
    for tool in (gradcheck, TG.gradcheck):
        with pytest.raises(TG.GradcheckError, match="batched"):
            tool(WrongBatched.apply, x, check_batched_forward_grad=True, **kw)
    with pytest.raises(GradcheckError) as info:
        gradcheck(WrongBatched.apply, x, check_batched_forward_grad=True, **kw)
    assert info.value.inputs == [0] and "differs from the looped one" in str(info.value)


def cubed(jvp_scale: float):
    """x**3 whose backward goes through a Function with a right backward and a jvp scaled by
    ``jvp_scale``: only the forward-over-reverse derivatives see the scale."""

    class Grad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, g):
            ctx.save_for_backward(x, g)
            ctx.save_for_forward(x, g)
            return 3 * x * x * g

        @staticmethod
        def backward(ctx, gg):
            x, g = ctx.saved_tensors
            return 6 * x * g * gg, 3 * x * x * gg

        @staticmethod
        def jvp(ctx, tx, tg):
            x, g = ctx.saved_tensors
            return (6 * x * g * tx) * jvp_scale + 3 * x * x * tg

    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            ctx.save_for_forward(x)
            return x ** 3

        @staticmethod
        def jvp(ctx, t):
            return 3 * ctx.saved_tensors[0] ** 2 * t

        @staticmethod
        def backward(ctx, g):
            return Grad.apply(ctx.saved_tensors[0], g)

    return Cube.apply


def test_fwd_over_rev():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True,
                    generator=torch.Generator().manual_seed(2))
    good, bad = cubed(1.0), cubed(1.02)
    assert gradgradcheck(good, x, check_fwd_over_rev=True)
    assert TG.gradgradcheck(good, x, check_fwd_over_rev=True)
    assert gradgradcheck(bad, x)                                 # reverse over reverse is right
    assert not TG.gradgradcheck(bad, x, check_fwd_over_rev=True, raise_exception=False)
    with pytest.raises(GradcheckError) as info:
        gradgradcheck(bad, x, check_fwd_over_rev=True, check_rev_over_rev=False,
                      check_undefined_grad=False)
    assert info.value.inputs == [0]
    assert str(info.value).splitlines()[0] == \
        "gradgradcheck (forward AD): Jacobian mismatch for inputs[0]"


def test_an_undefined_tangent_must_act_as_a_zero_one():
    class Undefined(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_forward(x, w)
            ctx.set_materialize_grads(False)      # undefined tangents reach jvp as None
            return x * w

        @staticmethod
        def jvp(ctx, tx, tw):
            x, w = ctx.saved_tensors
            return (0 if tx is None else tx * w) + (x if tw is None else x * tw)   # None is no zero

    x, w, _ = _inputs()
    kw = dict(check_forward_ad=True, check_backward_ad=False)
    assert gradcheck(Undefined.apply, (x, w), check_undefined_grad=False, **kw)
    with pytest.raises(GradcheckError, match="undefined tangent") as info:
        gradcheck(Undefined.apply, (x, w), **kw)
    assert info.value.inputs == [1]
    with pytest.raises(TG.GradcheckError):
        TG.gradcheck(Undefined.apply, (x, w), **kw)


def test_opinfo_harness_seeds_jvp_bugs_at_one_input():
    """benchmarks/opinfo.py --forward-ad's seeded bug (opinfo_forward.py): a right backward, a jvp with one entry of
    one input's contribution moved; both tools catch it, the drop-in names that input."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "opinfo_forward.py"
    spec = importlib.util.spec_from_file_location("opinfo_bench_fwd", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)          # op_db is imported only when ops() runs

    def fn(a, b):
        return (a * b).sin(), a.exp()

    x, w, _ = _inputs(4)
    for seed in range(3):
        bugged, at = mod.seeded_forward(fn, (x, w), seed)
        assert gradcheck(bugged, (x, w))                       # the backward is right
        kw = dict(check_forward_ad=True, check_backward_ad=False)
        assert not TG.gradcheck(bugged, (x, w), raise_exception=False, **kw)
        with pytest.raises(GradcheckError) as info:
            gradcheck(bugged, (x, w), **kw)
        assert info.value.inputs == [at]


def test_forward_over_reverse_of_a_linear_solve_agrees_with_torch():
    """jvp of gradgradcheck's torch.func.vjp form disagreed with torch here (every entry of
    linalg.solve's forward over reverse); the columns now come from dual tensors."""
    g = torch.Generator().manual_seed(0)
    A = (torch.randn(5, 5, generator=g, dtype=torch.float64) + 5 * torch.eye(5, dtype=torch.float64))
    A.requires_grad_()
    b = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    kw = dict(check_fwd_over_rev=True, check_rev_over_rev=False, check_undefined_grad=False)
    for fast in (False, True):
        assert torch.autograd.gradgradcheck(torch.linalg.solve, (A, b), fast_mode=fast, **kw)
        assert gradgradcheck(torch.linalg.solve, (A, b), fast_mode=fast, **kw)
