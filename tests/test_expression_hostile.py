"""The catalogue of hostile expressions (docs/expression.md, "Limits"): each exits 2 with one
error line naming the file, the layer and the field (then at most the expression and a caret
under the column), no traceback, and quickly: limits are checked before anything is parsed
or allocated. The time bound is loose (the machine is shared); it guards against a hang."""
from __future__ import annotations

import time

import pytest
import yaml
from click.testing import CliRunner

from gradcheck_cli.cli import main

GOOD = {"x": "dy @ W.T", "W": "x.T @ dy", "b": "sum(dy, 0)"}


def case(forward="x @ W + b", field=None, text=None, **extra) -> dict:
    grads = dict(GOOD)
    layer = {"type": "expression", "axes": ["N", "D"], "params": {"W": ["D", 3], "b": [3]},
             "forward": forward, "backward": {"correlation": grads}, **extra}
    if field:
        grads[field] = text
    return {"input": [4, 6], "layers": [layer, {"type": "linear", "out_features": 2}]}


F, W = "forward", "W"      # where the hostile text goes: the forward, or backward.correlation.W
CATALOGUE = [
    ("dunder-attr", F, "x.__class__", "dunder"),
    ("dunder-import", F, "__import__('os').system('true')", "dunder"),
    ("subclasses", F, "().__class__.__base__.__subclasses__()", "dunder"),
    ("attr-chain", F, "x.T.real.imag", r"attribute `\.(imag|real)`"),
    ("attr-dtype", W, "x.dtype", r"attribute `\.dtype`"),
    ("method-call", F, "x.reshape(4, 6) @ W + b", "only the listed functions"),
    ("numpy-module", F, "np.exp(x) @ W + b", "only the listed functions"),
    ("lambda", F, "(lambda: x)()", "lambda"),
    ("list-comp", W, "[v for v in x]", "comprehension"),
    ("dict-comp", W, "{k: 1 for k in x}", "comprehension"),
    ("generator", W, "sum(v for v in x)", "comprehension"),
    ("walrus", F, "(z := x) @ W + b", "assignment"),
    ("if-expr", F, "x if W else b", "conditional"),
    ("bool-op", F, "x and W", "`and`/`or`"),
    ("open", F, "open('/etc/passwd')", "unknown function `open`"),
    ("eval", F, "eval('1')", "unknown function `eval`"),
    ("getattr", F, "getattr(x, 'T')", "unknown function `getattr`"),
    ("statement", F, "x @ W + b; import os", "syntax error"),
    ("import", F, "import os", "syntax error"),
    ("nul-byte", F, "x @ W\x00 + b", "not allowed"),
    ("unicode", F, "x @ W + b\u202e", "not allowed"),
    ("million-chars", F, "x" + " + x" * 250_000, "at most 2,000"),
    ("nested-10000", F, "(" * 10_000 + "x" + ")" * 10_000, "at most 2,000|nested more than"),
    ("nested-brackets", F, "(" * 40 + "x" + ")" * 40 + " @ W + b", "nested more than 32"),
    ("unary-chain", F, "-" * 1500 + "x @ W + b", "nested more than 64"),
    ("kron-1e4", F, "kron(ones(10**4, 10**4), ones(10**4, 10**4))", "over the memory limit"),
    ("ones-1e12", F, "ones(10**12)", "over the memory limit"),
    ("zeros-1e6-square", W, "zeros(10**6, 10**6)", "over the memory limit"),
    ("pad-huge", F, "pad(x, 10**7) ", "over the memory limit"),
    ("dilate-huge", F, "dilate(x, 10**12, 1)", "over the memory limit"),
    ("einsum-work", W, "einsum('a,b,c,d->', ones(1000), ones(1000), ones(1000), ones(1000)) + x.T @ dy",
     "multiply-adds"),
    ("int-power", F, "10**10**10 * x @ W + b", "too large"),
    ("complex", F, "x @ W * (-1) ** 0.5 + b", "complex number"),
    ("float-overflow", F, "1e308 * 10 * x @ W + b", "gives inf"),
    ("zero-division", F, "x @ W / (N - N) + b", "NaN or Inf"),
    ("int-zero-division", F, "x @ W / (N // 0) + b", "division by zero"),
    ("scalar-zero-division", F, "x @ W * (1 / (N - 4)) + b", "division by zero"),
    ("nan-log", F, "log(x - 100) @ W + b", "NaN or Inf"),
    ("nan-sqrt", W, "sqrt(-ones(D, 3)) + x.T @ dy", "NaN or Inf"),
    ("inf-divide", F, "x @ W / 0.0 + b", "NaN or Inf"),
    ("string-repeat", F, "'a' * 10**9", "needs arrays or numbers"),
    ("tuple-repeat", F, "x.shape * 10**9", "needs arrays or numbers"),
    ("other-layer", F, "layers[1].W @ x", r"attribute `\.W`"),
    ("other-layer-name", F, "x @ W + b + W1", "unknown name `W1`"),
    ("dy-in-forward", F, "dy @ W", "unknown name `dy`"),
    ("fancy-index", F, "x[x > 0]", "an index must be"),
    ("index-range", F, "x[10] @ W + b", "out of range"),
    ("shape-mismatch", W, "dy.T @ x", r"gives shape \(3, 6\), but W has shape \(6, 3\)"),
    ("matmul-mismatch", F, "x @ W.T + b", r"shapes \(4, 6\) and \(3, 6\) do not match for @"),
    ("mat-size", W, "mat(x, 5, 5)", "needs 25 entries"),
    ("bad-mode", W, "correlate(x, dy, 'bogus') + x.T @ dy", "expected one of"),
    ("value-size", F, "ones(sum(x)) @ W", "known from shapes"),
    ("empty", F, "   ", "empty expression"),
    ("not-text", F, ["x"], "expected an expression"),
]


@pytest.mark.parametrize("name,where,text,says", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_hostile_expression(tmp_path, name, where, text, says):
    doc = case(forward=text) if where == F else case(field=W, text=text)
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(doc, width=10**7), encoding="utf-8")
    started = time.perf_counter()
    res = CliRunner().invoke(main, ["run", str(path)])
    took = time.perf_counter() - started
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.stderr.splitlines()
    field = "forward" if where == F else "backward.correlation.W"
    assert lines[0].startswith(f"error: {path}: layers[0].{field}"), lines[0][:300]
    assert len(lines) <= 3 and all(len(ln) <= 400 for ln in lines), lines
    if len(lines) == 3:                        # the expression, and a caret under the column
        assert lines[2].strip() == "^"
    assert "Traceback" not in res.output
    import re
    assert re.search(says, lines[0]), lines[0][:300]
    assert took < 5, f"{name} took {took:.1f} s"     # a loose guard: the machine is shared


def test_million_characters_refused_before_parsing(make_case):
    """The length limit is checked on the text before ast sees it: the expression layer refuses a
    1e6-character expression at once (the CLI's time is PyYAML's reading of the 1 MB file)."""
    from gradcheck_cli.errors import GradcheckError

    doc = case(forward="x" + " + x" * 250_000)
    started = time.perf_counter()
    with pytest.raises(GradcheckError, match="at most 2,000"):
        make_case(**doc)
    assert time.perf_counter() - started < 1


def test_catalogue_is_long_enough():
    assert len(CATALOGUE) >= 30


def test_validate_catches_shapes(tmp_path):
    """`gradcheck validate` runs the shape pass: a shape mismatch is found without computing."""
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(case(field=W, text="dy.T @ x")), encoding="utf-8")
    res = CliRunner().invoke(main, ["validate", str(path)])
    assert res.exit_code == 2
    assert "layers[0].backward.correlation.W, column 1: gives shape (3, 6), but W has shape (6, 3)" in res.stderr


def test_random_expressions_never_crash_and_shapes_are_exact():
    """Seeded random expressions over every function and operator: each is either refused with
    an ExprError or evaluates to what the shape pass predicted (never another exception)."""
    import random

    import numpy as np

    from gradcheck_cli.exprlang import A, FUNCTIONS, Expr, ExprError

    rnd = random.Random(0)
    env = {"x": np.random.default_rng(0).standard_normal((4, 6)), "W": np.ones((6, 3)), "v": np.arange(5.0),
           "N": 4, "D": 6}
    shapes = {k: A(v.shape) if isinstance(v, np.ndarray) else v for k, v in env.items()}
    atoms = ["x", "W", "v", "N", "D", "0", "1", "-1", "2", "0.5", "'valid'", "None", "(1, 2)", "[0, 1]",
             "x.T", "x.shape", "()", "1e300"]

    def gen(depth=0):
        r = rnd.random()
        if depth > 3 or r < 0.3:
            return rnd.choice(atoms)
        if r < 0.55:
            return f"({gen(depth + 1)} {rnd.choice(['+', '-', '*', '/', '**', '@', '//', '%', '>'])} {gen(depth + 1)})"
        if r < 0.65:
            return f"{gen(depth + 1)}[{rnd.choice(['0', '1:', '::2', 'None', '-1', '0, 0', ':, 1', '5'])}]"
        args = ", ".join(gen(depth + 1) for _ in range(rnd.randint(0, 4)))
        return f"{rnd.choice(sorted(FUNCTIONS))}({args})"

    evaluated = 0
    for _ in range(1500):
        text = gen()
        try:
            predicted = Expr(text).abstract(shapes, 2**30)
            got = Expr(text).value(env, np.float64, 2**30)
        except ExprError:
            continue
        evaluated += 1
        if isinstance(predicted, A):
            assert isinstance(got, np.ndarray) and got.shape == predicted.shape, text
        else:
            assert not isinstance(got, np.ndarray), text
    assert evaluated > 200
