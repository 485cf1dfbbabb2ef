"""gradcheck_cli.torch.gradcheck / gradgradcheck as drop-ins for torch.autograd's."""
from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch", reason="the torch drop-ins need PyTorch")

from gradcheck_cli.torch import GradcheckError, gradcheck, gradgradcheck  # noqa: E402

TorchGradcheckError = sys.modules["torch.autograd.gradcheck"].GradcheckError


def scaled_product(second: float):
    """An autograd.Function (alpha x w, sin(x + w)): two tensor inputs, a float option, a tuple
    output; ``second`` scales the gradient of w (1.0 = correct)."""

    class ScaledProduct(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, alpha):
            ctx.save_for_backward(x, w)
            ctx.alpha = alpha
            return alpha * x * w, torch.sin(x + w)

        @staticmethod
        def backward(ctx, g1, g2):
            x, w = ctx.saved_tensors
            c = torch.cos(x + w) * g2
            return ctx.alpha * w * g1 + c, (ctx.alpha * x * g1 + c) * second, None

    return ScaledProduct


ScaledProduct, BuggySecond = scaled_product(1.0), scaled_product(1.01)


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    return x, w, 0.5


# the same test body as with torch.autograd.gradcheck: only the import differs
def test_custom_function_passes_as_with_torch():
    assert gradcheck(ScaledProduct.apply, _inputs())
    assert gradcheck(ScaledProduct.apply, _inputs(), eps=1e-6, atol=1e-4)
    assert torch.autograd.gradcheck(ScaledProduct.apply, _inputs())


@pytest.mark.parametrize("fast_mode", [False, True])
def test_wrong_backward_for_the_second_input_is_named(fast_mode):
    with pytest.raises(TorchGradcheckError) as info:     # existing pytest.raises keep working
        gradcheck(BuggySecond.apply, _inputs(), fast_mode=fast_mode)
    e = info.value
    assert isinstance(e, GradcheckError) and e.inputs == [1]
    msg = str(e)
    assert msg.splitlines()[0] == "gradcheck: Jacobian mismatch for inputs[1]"
    assert "inputs[0]" not in msg.split("\n", 1)[1]
    assert "inputs[1]" in msg and "output[0]" in msg and "analytic" in msg and "numerical" in msg
    assert ("every entry of the Jacobian" in msg) != fast_mode
    with pytest.raises(TorchGradcheckError):
        torch.autograd.gradcheck(BuggySecond.apply, _inputs(), fast_mode=fast_mode)


def test_raise_exception_false_returns_false():
    assert gradcheck(BuggySecond.apply, _inputs(), raise_exception=False) is False


def test_single_tensor_input_and_output():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(torch.tanh, x)
    assert gradcheck(torch.tanh, (x,), fast_mode=True)


def test_a_one_entry_bug_in_a_large_input_is_caught_in_fast_mode():
    """torch's single projection often misses it; every input entry is compared here."""
    class OneEntry(torch.autograd.Function):
        generate_vmap_rule = True        # vmappable: fast mode perturbs every entry

        @staticmethod
        def forward(x):
            return x.sin()

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            out = (x.cos() * g).reshape(-1)
            bump = torch.zeros_like(out)
            bump[17] = 1e-2
            return (out + bump * out.abs().max()).reshape(x.shape)

    x = torch.randn(30, 30, dtype=torch.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match=r"inputs\[0\]\[0, 17\]"):
        gradcheck(OneEntry.apply, (x,), fast_mode=True)


def test_complex_outputs_and_integer_outputs():
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert gradcheck(torch.fft.fft, (x,))
    assert gradcheck(lambda t: torch.max(t, dim=0), (x.reshape(2, 3),))


def test_non_tensor_and_frozen_inputs_are_passed_through():
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, dtype=torch.float64)               # not checked: no requires_grad
    assert gradcheck(lambda a, b, k: (a * b) ** k, (x, y, 2))
    with pytest.raises(ValueError, match="at least one input tensor to require gradient"):
        gradcheck(torch.sin, (y,))


def test_backward_not_multiplied_by_grad_output_names_the_input():
    class Offset(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            return x * w

        @staticmethod
        def backward(ctx, g):
            return g, g + 1.0

    x, w, _ = _inputs()
    with pytest.raises(GradcheckError) as info:
        gradcheck(Offset.apply, (x, w), raise_exception=True)
    assert 1 in info.value.inputs


def test_keywords_it_cannot_honour_are_refused_by_name():
    with pytest.raises(NotImplementedError, match="masked"):
        gradcheck(ScaledProduct.apply, _inputs(), masked=True)
    with pytest.raises(NotImplementedError, match="masked"):
        gradgradcheck(torch.sin, (_inputs()[0],), masked=True)


def test_check_batched_grad_and_dtypes():
    x, w, _ = _inputs()
    assert gradcheck(lambda a, b: (a * b).exp(), (x, w), check_batched_grad=True,
                     check_grad_dtypes=True, nondet_tol=1e-12)
    # its backward's ops have batching rules: torch's check_batched_grad passes it too
    assert gradcheck(ScaledProduct.apply, _inputs(), check_batched_grad=True)
    assert torch.autograd.gradcheck(ScaledProduct.apply, _inputs(), check_batched_grad=True)


def test_gradgradcheck_passes_and_names_a_wrong_double_backward():
    x, w, _ = _inputs()
    assert gradgradcheck(lambda a, b: (a * b.sin()).exp(), (x, w))
    assert gradgradcheck(ScaledProduct.apply, _inputs(), fast_mode=True)   # differentiable backward

    class WrongDouble(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x.detach() ** 2 * g       # detached: no second derivative through x

    with pytest.raises(TorchGradcheckError) as info:
        gradgradcheck(WrongDouble.apply, (x,))
    assert info.value.inputs == [0] and "gradgradcheck: Jacobian mismatch for inputs[0]" in str(info.value)
    assert torch.autograd.gradcheck(WrongDouble.apply, (x,))


def test_float32_inputs_with_torchs_advice():
    x = torch.randn(6, dtype=torch.float32, requires_grad=True)
    assert gradcheck(torch.sin, (x,), eps=1e-3, atol=1e-3, rtol=1e-2)


def test_kinks_pass_where_the_one_sided_differences_bracket_the_gradient():
    x = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64, requires_grad=True)
    assert gradcheck(torch.abs, (x,))           # abs'(0) = 0 lies between -1 and 1


def test_opinfo_harness_smoke(capsys):
    """benchmarks/opinfo.py on a handful of ops: both tools agree and the seeded bugs are caught."""
    pytest.importorskip("expecttest", reason="torch's OpInfo database needs expecttest")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "opinfo.py"
    spec = importlib.util.spec_from_file_location("opinfo_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    threads = torch.get_num_threads()
    try:
        out = mod.main(["--ops", "sin,mul,nn.functional.softplus", "--samples", "1", "--setting", "own",
                        "--no-conv", "--no-gradgrad"])
    finally:
        torch.set_num_threads(threads)
    r = out["results"][0]
    assert r["samples"] >= 3 and not r["false_alarm"] and not r["errors"]
    b = r["bugs"]
    assert b["seeded"] >= 3 and b["dropin"] == b["named"] == b["seeded"] and not b["missed_torch_caught"]
    assert "false alarms (torch passes, drop-in fails): 0" in capsys.readouterr().out


def test_fast_mode_on_a_function_vmap_cannot_batch():
    """A data-dependent Python branch defeats vmap: fast mode then runs a loop of forwards, 2 per
    entry up to compare.FAST_CALLS in all, and past that 2 x LOOP_DIRECTIONS along seeded random
    directions per input; a failing direction is followed entry by entry, so either way the
    failure names the wrong input and its entries."""
    bad = scaled_product(1.5)

    def branchy(a, b):         # .item()-like: not vmappable
        return bad.apply(a, b, 0.5) if float(a.detach().sum()) > -1e9 else None

    g = torch.Generator().manual_seed(0)
    for shape in ((2, 2), (12, 12)):               # 2 x (4 + 4) <= 16 < 2 x 288
        x, w = (torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
                for _ in "xw")
        assert gradcheck(lambda a, b: ScaledProduct.apply(a, b, 0.5) if float(a.detach().sum())
                         > -1e9 else None, (x, w), fast_mode=True)
        with pytest.raises(GradcheckError, match=r"inputs\[1\]\[\d+, \d+\] / output") as info:
            gradcheck(branchy, (x, w), fast_mode=True)
        assert info.value.inputs == [1] and "directions" not in str(info.value)


def test_conjugate_and_strided_complex_outputs():
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert gradcheck(torch.fft.ifft, (x,))                          # a conjugate view inside
    m = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda a: torch.linalg.eigvals(a).abs(), (m,))


def sort_like(bump: float):
    """torch.sort's values as an autograd.Function; ``bump`` moves entry 7 of the input gradient
    by that fraction of its largest magnitude (0.0 = correct)."""

    class SortLike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            values, idx = torch.sort(x)
            ctx.save_for_backward(idx)
            return values

        @staticmethod
        def backward(ctx, g):
            (idx,) = ctx.saved_tensors
            gx = torch.zeros_like(g).scatter(0, idx, g)
            return gx + bump * gx.abs().max() * (torch.arange(len(gx)) == 7)

    return SortLike


def test_a_one_entry_bug_of_a_sort_of_large_values_is_caught_over_the_budget(monkeypatch):
    """Full mode over the budget: projected rows against every input entry (never directions),
    and the rounding term counts only the outputs a perturbation moved (summed over all of
    them, the large sorted values hid torch's seeded sort#0 bug)."""
    from gradcheck_cli.torch import compare
    monkeypatch.setattr(compare, "BUDGET", 1)             # random cotangents, as for 8000 values
    g = torch.Generator().manual_seed(0)
    x = (torch.randperm(400, generator=g).double() * 100 + 4e4).requires_grad_()
    assert gradcheck(sort_like(0.0).apply, (x,))
    assert torch.autograd.gradcheck(sort_like(0.0).apply, (x,))
    with pytest.raises(GradcheckError, match=r"inputs\[0\]\[7\]") as info:
        gradcheck(sort_like(1e-2).apply, (x,))
    assert info.value.inputs == [0]
    assert not torch.autograd.gradcheck(sort_like(1e-2).apply, (x,), raise_exception=False)


def test_gradgradcheck_of_native_layer_norm_without_weight_agrees_with_torch():
    """It crashed (an undefined gradient reached the double backward); now the verdict is
    torch's (OpInfo's sample #1: bias, no weight)."""
    g = torch.Generator().manual_seed(0)
    x, b = (torch.randn(1, 2, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in "xb")

    def fn(a, c):
        return torch.native_layer_norm(a, (1, 2, 3), None, c, 0.5)

    for fast in (False, True):    # fast mode: one cotangent row per output, some rows leave b undefined
        verdicts = [tool(fn, (x, b), raise_exception=False, fast_mode=fast)
                    for tool in (torch.autograd.gradgradcheck, gradgradcheck)]
        assert verdicts[0] == verdicts[1]


def test_a_random_function_that_reseeds_is_vmapped_with_one_draw_for_the_batch():
    """torch's OpInfo samples reseed inside the function: vmap then draws once for the whole batch
    (randomness="same"), checked bit for bit against the plain call; without reseeding each call
    draws anew and the check fails, as torch's does."""
    from gradcheck_cli.torch.jacobian import Problem

    def reseeded(x):
        torch.manual_seed(0)
        return torch.nn.functional.dropout(x, 0.5)

    x = torch.randn(6, 7, dtype=torch.float64, requires_grad=True)
    assert gradcheck(reseeded, (x,)) and torch.autograd.gradcheck(reseeded, (x,))
    p = Problem(reseeded, (x,), reseeded(x))
    d = torch.zeros(3, 42, dtype=torch.float64)
    d[1, 4] = 1e-6
    assert torch.equal(p.perturbed(0, d)[0], p.f0) and p.randomness == "same" and p.vmap_ok[0]
    drawn = lambda a: torch.nn.functional.dropout(a, 0.5)      # noqa: E731
    assert not gradcheck(drawn, (x,), raise_exception=False)
    assert not torch.autograd.gradcheck(drawn, (x,), raise_exception=False)
