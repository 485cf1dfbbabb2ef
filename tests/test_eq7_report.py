"""`gradcheck report eq7`: numbers recomputed independently, text that follows the numbers, files, CLI.

The references use scipy (lstsq, pinv, correlate2d) and plain loops, never gradcheck_cli.layers.abc.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
from click.testing import CliRunner

from gradcheck_cli.cases import load
from gradcheck_cli.cli import main
from gradcheck_cli.network import Network
from gradcheck_cli.report import eq7

ROOT = Path(__file__).resolve().parents[1]
SMALL = eq7.Settings(max_bases=2, scales=(1.0, 2.0), steps=4, lrs=(0.3, 1.0))
CASE = """
    name: eq7-small
    seed: 5
    input: [2, 2, 5, 5]
    layers:
      - type: abc_conv2d
        out_channels: 2
        kernel: 3
        padding: 1
        bases: 2
        backward: eq1
      - type: tanh
    loss: projection
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    p = tmp_path_factory.mktemp("eq7") / "small.yaml"
    p.write_text(textwrap.dedent(CASE))
    case = load(p)
    return p, case, eq7.build(case, SMALL)


# ------------------------------------------------------------------------------------------
# independent references
# ------------------------------------------------------------------------------------------
def conv(x, W, pad):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    return np.array([[sum(scipy.signal.correlate2d(xp[n, c], W[o, c], mode="valid") for c in range(x.shape[1]))
                      for o in range(W.shape[0])] for n in range(x.shape[0])])


def conv_wgrad(x, dy, kshape, pad):
    """dL/dW of y = conv(x, W) for upstream dy, by loops over the kernel entries."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    O, C, kh, kw = kshape
    Ho, Wo = dy.shape[2:]
    G = np.zeros(kshape)
    for o in range(O):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    G[o, c, i, j] = np.sum(dy[:, o] * xp[:, c, i:i + Ho, j:j + Wo])
    return G


def ref_binarize(w, M):
    n = len(w)
    mu = w.sum() / n
    s = np.sqrt(((w - mu) ** 2).sum() / n)
    u = [0.0] if M == 1 else [-1 + k * 2 / (M - 1) for k in range(M)]
    B = np.array([[1.0 if wi - mu + um * s >= 0 else -1.0 for um in u] for wi in w])
    return B, np.array(u), scipy.linalg.lstsq(B, w)[0], s


def ref_rules(x, R, W, M, pad):
    """dL/dW of every rule for L = <R, tanh(conv(x, W_hat))>, from the note's table."""
    w = W.reshape(-1)
    B, u, a, s = ref_binarize(w, M)
    W_hat = (B @ a).reshape(W.shape)
    y = conv(x, W_hat, pad)
    G = conv_wgrad(x, R * (1 - np.tanh(y) ** 2), W.shape, pad).reshape(-1)
    P = scipy.linalg.pinv(B)
    path = sum((G @ B[:, m]) * P[m] for m in range(M))
    ds = (w - w.mean()) / (len(w) * s)
    ste = sum(a[m] * (G - G.sum() / len(w) + u[m] * G.sum() * ds) for m in range(M))
    return {"eq7_literal": (a ** 2).sum() * G, "eq1": a.sum() * G, "eq2": a.sum() * G + path,
            "exact": path, "ste_mean_std": ste}, a


def metrics(a, b):
    return (np.linalg.norm(a - b) / np.linalg.norm(b), a @ b / (np.linalg.norm(a) * np.linalg.norm(b)),
            np.linalg.norm(a) / np.linalg.norm(b))


def case_values(case):
    net = Network.build(case)
    return net.x0, net.params[0]["W"], net.loss.target


# ------------------------------------------------------------------------------------------
# the numbers
# ------------------------------------------------------------------------------------------
def test_alphas_and_pairwise_recomputed_independently(small):
    _, case, r = small
    x, W0, R = case_values(case)
    grads, alpha = ref_rules(x, R, W0, 2, 1)
    np.testing.assert_allclose(r["alphas"]["alpha"], alpha, rtol=1e-12)
    assert r["alphas"]["ratio"] == pytest.approx((alpha ** 2).sum() / alpha.sum(), rel=1e-12)
    assert len(r["pairwise"]) == 10
    for p in r["pairwise"]:
        rel, cos, ratio = metrics(grads[p["a"]], grads[p["b"]])
        assert p["rel_l2"] == pytest.approx(rel, rel=1e-8), (p["a"], p["b"])
        assert p["cosine"] == pytest.approx(cos, rel=1e-8, abs=1e-10)
        assert p["norm_ratio"] == pytest.approx(ratio, rel=1e-8)


def test_sweep_points_recomputed_independently(small):
    _, case, r = small
    x, W0, R = case_values(case)
    assert {(p["M"], p["scale"]) for p in r["sweep"]} == {(1, 1.0), (1, 2.0), (2, 1.0), (2, 2.0)}
    for p in r["sweep"]:
        grads, alpha = ref_rules(x, R, p["scale"] * W0, p["M"], 1)
        assert p["ratio"] == pytest.approx((alpha ** 2).sum() / alpha.sum(), rel=1e-12)
        for name, m in p["pairs"].items():
            a, b = name.split("|")
            rel, cos, ratio = metrics(grads[a], grads[b])
            assert m["rel_l2"] == pytest.approx(rel, rel=1e-8)
            assert m["cosine"] == pytest.approx(cos, rel=1e-8, abs=1e-10)
            assert m["norm_ratio"] == pytest.approx(ratio, rel=1e-8)


def test_verification_and_std_note(small):
    _, case, r = small
    _, W0, _ = case_values(case)
    v = {(x["rule"], x["form"]): x for x in r["verification"]}
    assert len(v) == 15
    for rule in ("eq1", "eq2", "exact", "ste_mean_std"):
        assert all(v[(rule, f)]["passed"] and v[(rule, f)]["rel_l2"] < 1e-7 for f in ("kron", "correlation", "spray"))
    ratio = r["alphas"]["ratio"]
    for f in ("kron", "correlation", "spray"):
        e7 = v[("eq7_literal", f)]
        assert not e7["passed"] and e7["against"] == "eq1 surrogate"
        assert e7["rel_l2"] == pytest.approx(abs(ratio - 1), rel=1e-5)    # analytic = ratio x numerical
        assert e7["norm_ratio"] == pytest.approx(ratio, rel=1e-5)
    sn = r["std_note"]
    assert sn["population"] == pytest.approx(np.std(W0), rel=1e-13)
    assert sn["seed_literal"] == pytest.approx(np.var(W0), rel=1e-13)


def test_training_recomputed_independently(small):
    _, case, r = small
    _, W0, _ = case_values(case)
    rng = np.random.default_rng([case.seed, 7])                 # the documented draw order
    A = rng.standard_normal((SMALL.batch, 2, 5, 5))
    T = conv(A, rng.standard_normal(W0.shape) / np.sqrt(18), 1)
    for rule, lr in (("eq1", 0.3), ("eq7_literal", 1.0), ("exact", 0.3)):
        W, losses = W0.copy(), []
        for step in range(SMALL.steps + 1):
            w = W.reshape(-1)
            B, _, a, _ = ref_binarize(w, 2)
            res = conv(A, (B @ a).reshape(W.shape), 1) - T
            losses.append(0.5 * np.mean(res ** 2))
            G = conv_wgrad(A, res / res.size, W.shape, 1).reshape(-1)
            g = {"eq1": a.sum() * G, "eq7_literal": (a ** 2).sum() * G,
                 "exact": sum((G @ B[:, m]) * scipy.linalg.pinv(B)[m] for m in range(2))}[rule]
            W = W - lr * g.reshape(W.shape)
        run = next(x for x in r["training"]["runs"] if x["rule"] == rule and x["lr"] == lr)
        np.testing.assert_allclose(run["losses"], losses, rtol=1e-10)


def test_report_is_reproducible(small):
    _, case, r = small
    assert json.dumps(eq7.build(case, SMALL)) == json.dumps(r)


# ------------------------------------------------------------------------------------------
# the text follows the numbers
# ------------------------------------------------------------------------------------------
def test_findings_are_written_from_the_numbers(small):
    _, _, r = small
    text = " ".join(r["findings"])
    assert f"{r['alphas']['ratio']:.3g}" in text
    assert "same direction in every one of the 4 sweep settings" in text

    r2 = copy.deepcopy(r)
    r2["sweep"][2]["pairs"]["eq7_literal|eq1"]["cosine"] = 0.5
    t2 = " ".join(eq7.findings(r2))
    assert "do not always point the same way" in t2 and "0.500000 (M = 2, scale 1)" in t2

    r3 = copy.deepcopy(r)
    for p in r3["pairwise"]:
        if (p["a"], p["b"]) == ("eq7_literal", "eq1"):
            p["norm_ratio"] = 123.0
    assert "is 123 at the case's W0" in " ".join(eq7.findings(r3))

    r4 = copy.deepcopy(r)
    for run in r4["training"]["runs"]:
        if run["rule"] == "exact" and run["lr"] == 0.3:
            run["final"] = 1e-9
    assert "lowest final loss 1.00e-09 with exact" in " ".join(eq7.findings(r4))

    r6 = copy.deepcopy(r)
    for p in r6["sweep"]:
        if p["scale"] == 1.0:
            p["pairs"]["eq7_literal|eq1"]["norm_ratio"] = 0.25 * p["M"]
    assert "Against M (scale 1), the factor rises: 0.25 at M = 1, 0.5 at M = 2" in " ".join(eq7.findings(r6))

    r5 = copy.deepcopy(r)
    r5["verification"][3]["passed"] = False          # an eq1 row
    assert "did NOT match" in " ".join(eq7.findings(r5))
    assert eq7.findings(r) == r["findings"]


# ------------------------------------------------------------------------------------------
# files and the command
# ------------------------------------------------------------------------------------------
def test_cli_html_markdown_json(small, tmp_path):
    path, _, r = small
    args = [str(path), "--max-bases", "2", "--scales", "1,2", "--steps", "4"]
    res = CliRunner().invoke(main, ["report", "eq7", *args, "-o", str(tmp_path / "r.html"),
                                    "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert 'src="http' not in page and "<link" not in page           # self-contained
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["pairwise"] == json.loads(json.dumps(r["pairwise"]))  # settings differ only in lrs
    for f in doc["findings"][:3]:
        assert f.split(":")[0] in page
    res = CliRunner().invoke(main, ["report", "eq7", *args, "-o", str(tmp_path / "r.md")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "r.md").read_text()
    for name in ("alphas", "pairwise", "sweep", "training"):
        png = tmp_path / f"r-{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png.name})" in md
    assert "## Verification" in md and "| eq7_literal | kron | eq1 surrogate |" in md


@pytest.mark.parametrize("args,needle", [
    (["-o", "r.txt"], "--output"),
    (["--scales", "1,x", "-o", "r.html"], "--scales"),
    (["--scales", "0", "-o", "r.html"], "--scales"),
])
def test_cli_bad_options_exit_2(tmp_path, args, needle, small):
    res = CliRunner().invoke(main, ["report", "eq7", str(small[0]), *[str(tmp_path / a) if a.startswith("r.") else a for a in args]])
    assert res.exit_code == 2 and needle in res.output


def test_case_without_abc_layer_is_one_line_exit_2(tmp_path):
    p = tmp_path / "dense.yaml"
    p.write_text("input: [2, 3]\nlayers: [{type: linear, out_features: 2}]\n")
    res = CliRunner().invoke(main, ["report", "eq7", str(p), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "abc_conv2d" in res.output and "Traceback" not in res.output


def test_default_case_is_bundled_and_valid():
    case = eq7.load_case(None)
    assert eq7.abc_index(case) == 0 and case.layers[0].options["bases"] >= 2


def test_matplotlib_is_imported_only_by_the_report():
    code = ("import sys, gradcheck_cli.cli, gradcheck_cli.report.eq7, gradcheck_cli.report.eq7_render;"
            "assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_verification_can_sample_entries(small):
    _, case, _ = small
    rows = eq7.verification(case, 0, lambda label: None, sample=5)
    assert len(rows) == 15 and all(v["checked"] == 5 for v in rows)
    assert all(v["passed"] for v in rows if v["rule"] != "eq7_literal")
    assert not any(v["passed"] for v in rows if v["rule"] == "eq7_literal")
