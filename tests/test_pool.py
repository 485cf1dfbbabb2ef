"""maxpool2d and avgpool2d: forward against loops, forms against loop gradients and each other,
the tie rule, overlapping windows, the dropped remainder, and the numerical check."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from click.testing import CliRunner

from gradcheck_cli.cases import from_dict
from gradcheck_cli.check import run_case
from gradcheck_cli.cli import main
from gradcheck_cli.layers.pool import AvgPool2d, MaxPool2d


def loop_pool(x, size, stride, reduce):
    N, C, H, W = x.shape
    (kh, kw), (sh, sw) = size, stride
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    y = np.zeros((N, C, Ho, Wo))
    for n, c, p, q in itertools.product(range(N), range(C), range(Ho), range(Wo)):
        y[n, c, p, q] = reduce(x[n, c, p * sh:p * sh + kh, q * sw:q * sw + kw])
    return y


def loop_max_grad(dy, x, size, stride):
    """dL/dx: each dy to the first maximum of its window, scanning rows then columns."""
    (kh, kw), (sh, sw) = size, stride
    dx = np.zeros_like(x)
    for n, c, p, q in itertools.product(*map(range, dy.shape)):
        win = x[n, c, p * sh:p * sh + kh, q * sw:q * sw + kw]
        best = None
        for i in range(kh):
            for j in range(kw):
                if best is None or win[i, j] > win[best]:
                    best = (i, j)
        dx[n, c, p * sh + best[0], q * sw + best[1]] += dy[n, c, p, q]
    return dx


def loop_avg_grad(dy, x, size, stride):
    (kh, kw), (sh, sw) = size, stride
    dx = np.zeros_like(x)
    for n, c, p, q in itertools.product(*map(range, dy.shape)):
        dx[n, c, p * sh:p * sh + kh, q * sw:q * sw + kw] += dy[n, c, p, q] / (kh * kw)
    return dx


POOLS = [  # input shape, size, stride
    ((2, 3, 6, 6), (2, 2), (2, 2)),      # seed 002: 2x2, stride 2
    ((1, 2, 7, 5), (2, 2), (2, 2)),      # remainder row and column dropped
    ((3, 1, 6, 7), (3, 2), (2, 1)),      # overlapping, rectangular
    ((2, 4, 5, 9), (1, 3), (1, 3)),
    ((1, 1, 4, 4), (4, 4), (1, 1)),      # one window
]


def layer(cls, size, stride):
    return cls(size=list(size), stride=list(stride))


@pytest.mark.parametrize("shape,size,stride", POOLS)
def test_forward_and_every_form_match_loops(shape, size, stride):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    for cls, reduce, grad in ((MaxPool2d, np.max, loop_max_grad), (AvgPool2d, np.mean, loop_avg_grad)):
        lay = layer(cls, size, stride)
        y = lay.forward(x, {})
        np.testing.assert_allclose(y, loop_pool(x, size, stride, reduce), rtol=1e-14, atol=1e-14)
        assert y.shape == lay.output_shape(shape)
        dy = rng.standard_normal(y.shape)
        want = grad(dy, x, size, stride)
        for f in lay.forms:
            np.testing.assert_allclose(lay.backward(f, dy, x, {})["x"], want, rtol=1e-13, atol=1e-14,
                                       err_msg=f"{cls.__name__} {f}")


def test_maxpool_ties_go_to_the_first_index_in_row_major_order():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = 5.0      # window (0, 0): equal maxima at (0, 1) and (1, 0)
    x[0, 0, 3, 2] = x[0, 0, 3, 3] = 2.0      # window (1, 1): equal maxima at (3, 2) and (3, 3)
    # windows (0, 1) and (1, 0) are all zeros: the first entry wins
    lay = layer(MaxPool2d, (2, 2), (2, 2))
    dy = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    expect = np.zeros_like(x)
    expect[0, 0, 0, 1] = 1.0
    expect[0, 0, 0, 2] = 2.0
    expect[0, 0, 2, 0] = 3.0
    expect[0, 0, 3, 2] = 4.0
    for f in lay.forms:
        np.testing.assert_array_equal(lay.backward(f, dy, x, {})["x"], expect, err_msg=f)


def test_overlapping_max_windows_accumulate():
    """With stride < size one entry can be the max of several windows: its gradient sums."""
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0                       # the max of all four 2x2 windows (stride 1)
    lay = layer(MaxPool2d, (2, 2), (1, 1))
    dy = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    for f in lay.forms:
        dx = lay.backward(f, dy, x, {})["x"]
        assert dx[0, 0, 1, 1] == 10.0 and np.count_nonzero(dx) == 1


def test_maxpool_correlation_is_na_with_a_reason():
    assert "correlation" not in MaxPool2d.forms
    assert "fixed kernel" in MaxPool2d.na["correlation"]
    assert set(AvgPool2d.forms) == {"kron", "correlation", "spray"}


def test_stride_defaults_to_size():
    lay = MaxPool2d(size=3, stride=None)
    assert lay.output_shape((1, 2, 7, 9)) == (1, 2, 2, 3)


@pytest.mark.parametrize("cls", ["maxpool2d", "avgpool2d"])
@pytest.mark.parametrize("shape,size,stride", POOLS[:3])
def test_numerical_check_passes(cls, shape, size, stride):
    doc = {"name": "t", "seed": 5, "input": list(shape),
           "layers": [{"type": cls, "size": list(size), "stride": list(stride)}], "loss": "mse"}
    res = run_case(from_dict(doc, "<test>"))
    assert res.passed and res.rows
    assert all(r.max_rel_error < 1e-6 for r in res.rows)


def test_window_larger_than_input_is_a_one_line_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\ninput: [1, 1, 3, 3]\nlayers:\n  - {type: maxpool2d, size: 4}\n")
    res = CliRunner().invoke(main, ["run", str(p)])
    assert res.exit_code == 2
    assert "layers[0].size" in res.output and "larger than the input" in res.output
    assert "Traceback" not in res.output


def test_zero_stride_is_rejected(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\ninput: [1, 1, 4, 4]\nlayers:\n  - {type: avgpool2d, size: 2, stride: 0}\n")
    res = CliRunner().invoke(main, ["run", str(p)])
    assert res.exit_code == 2 and "layers[0].stride" in res.output
