"""The catalogue of bad and hostile inputs (docs/verdicts.md, "Hostile inputs"), one entry each.

Every entry asserts the exit code, that stderr is one line (or the documented short form: at
most ``lines`` lines) with the expected words, and that no traceback is printed. Entries that
need a real process (a FIFO, /dev/full, a closed pipe, a hang to guard against) run
``python -m gradcheck_cli`` with a timeout; the others go through click's CliRunner.
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner

from gradcheck_cli.cli import main

ROOT = Path(__file__).resolve().parents[1]
OK = "input: [2, 3]\nlayers: [{type: linear, out_features: 2}]\n"


@dataclasses.dataclass(frozen=True)
class Hostile:
    id: str
    doc: str                       # the expected behaviour, as the catalogue states it
    files: dict                    # name -> text, bytes or a function(folder) that makes it
    args: tuple = ("run", "case.yaml")
    code: int = 2
    says: str = ""                 # a regular expression stderr must match
    lines: int = 1                 # stderr has at most this many lines
    proc: bool = False             # needs a real process (python -m gradcheck_cli)
    check: Callable | None = None  # further assertions on the folder after the run


def bomb(levels: int = 9) -> str:
    """A "billion laughs" list: 9**levels values once its aliases are expanded."""
    s = "[&a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]"
    for i in range(1, levels):
        s += f", &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]"
    return s + "]"


def npy(a, **kw) -> Callable:
    return lambda d, name: np.save(d / name, a, **kw)


def link(target) -> Callable:
    return lambda d, name: os.symlink(target(d) if callable(target) else target, d / name)


def fifo(d: Path, name: str) -> None:
    os.mkfifo(d / name)


def pickle_bomb(d: Path, name: str) -> None:
    """A .npy of dtype object whose unpickling would create the file PWNED."""
    class Boom:
        def __reduce__(self):
            return (open, (str(d / "PWNED"), "w"))
    np.save(d / name, np.array([Boom()], dtype=object), allow_pickle=True)


def no_pwned(d: Path) -> None:
    assert not (d / "PWNED").exists(), "a .npy file was unpickled"


def junit_parses(d: Path) -> None:
    root = ET.parse(d / "j.xml").getroot()
    assert root[0].get("name") == "ctl\\x01x"


CUSTOM_RECURSES = """\
class L:
    def init_params(self, s, rng): return {}
    def forward(self, x, p): return 2 * x
    def backward(self, dy, x, p): return self.backward(dy, x, p)
"""
CUSTOM_HUGE_ERROR = """\
class L:
    def init_params(self, s, rng): return {}
    def forward(self, x, p): raise ValueError("x" * 1_000_000 + "\\n" * 10_000)
    def backward(self, dy, x, p): return {"x": dy}
"""
CUSTOM_EXITS = """\
import sys
class L:
    def init_params(self, s, rng): return {}
    def forward(self, x, p): sys.exit(1)
    def backward(self, dy, x, p): return {"x": dy}
"""
CUSTOM_NAN = """\
import numpy as np
class L:
    def init_params(self, s, rng): return {}
    def forward(self, x, p): return x * np.nan
    def backward(self, dy, x, p): return {"x": dy}
"""


def custom(impl: str) -> str:
    return f"input: [2, 3]\nlayers: [{{type: custom, impl: '{impl}'}}]\n"


def layer(spec: str, shape: str = "[2, 3]") -> str:
    return f"input: {shape}\nlayers: [{spec}]\n"


C = "case.yaml"
ENTRIES = [
    # -- the YAML document ------------------------------------------------------------------
    Hostile("empty-file", "`empty file: a case needs at least input and layers`", {C: ""}, says="empty file"),
    Hostile("only-comments", "same as an empty file", {C: "# nothing\n"}, says="empty file"),
    Hostile("top-level-list", "`the top level must be a mapping of fields, got a list`", {C: "- 1\n"},
            says="top level must be a mapping"),
    Hostile("top-level-scalar", "same, `got an integer`", {C: "42\n"}, says="got an integer"),
    Hostile("broken-yaml", "`case.yaml:N: broken YAML: ...` with the line", {C: "input: [2, 3\n"},
            says=r"case\.yaml:\d+: broken YAML"),
    Hostile("tab-indent", "broken YAML with the line (tabs are not YAML indentation)",
            {C: "input: [2, 3]\nlayers:\n\t- {type: relu}\n"}, says=r":3: broken YAML"),
    Hostile("python-tag", "`refused YAML tag (...os.system)`; nothing is executed",
            {C: "input: !!python/object/apply:os.system ['touch PWNED']\nlayers: []\n"},
            says="refused YAML tag", check=no_pwned),
    Hostile("python-name-tag", "refused YAML tag", {C: "input: !!python/name:os.system\nlayers: []\n"},
            says="refused YAML tag"),
    Hostile("unknown-tag", "refused YAML tag", {C: "input: !shape [2, 3]\nlayers: []\n"}, says="refused YAML tag"),
    Hostile("duplicate-top-key", "`case.yaml:2: duplicate key `input` (first on line 1)`",
            {C: "input: [2, 3]\ninput: [2, 4]\nlayers: [{type: relu}]\n"},
            says=r"case\.yaml:2: duplicate key `input` \(first on line 1\)"),
    Hostile("duplicate-layer-key-flow", "duplicate key `out_features`, with the line",
            {C: layer("{type: linear, out_features: 2, out_features: 3}")},
            says=r":2: duplicate key `out_features`"),
    Hostile("duplicate-layer-key-block", "duplicate key `out_features` (first on line 4), line 5",
            {C: "input: [2, 3]\nlayers:\n  - type: linear\n    out_features: 2\n    out_features: 3\n"},
            says=r"case\.yaml:5: duplicate key `out_features` \(first on line 4\)"),
    Hostile("duplicate-loss-key", "duplicate key `type`",
            {C: OK + "loss: {type: mse, type: sum}\n"}, says="duplicate key `type`"),
    Hostile("merge-key-override", "legal YAML: `<<: *base` then overriding a key is not a duplicate; exit 0",
            {C: "input: [2, 3]\nlayers:\n  - &b {type: linear, out_features: 2}\n"
                "  - <<: *b\n    out_features: 3\n"},
            code=0, lines=0),
    Hostile("alias-bomb-seed", "`more than 100,000 values once its aliases are expanded` in well under "
            "a second (was: a hang over 60 s)", {C: OK + f"seed: {bomb()}\n"}, says="alias bomb", proc=True),
    Hostile("alias-bomb-options", "the same, in a custom layer's options (was: 5 s, then the whole "
            "expansion printed)", {C: "input: [2, 3]\nlayers:\n  - {type: custom, impl: "
                                      "'gradcheck_cli.layers.custom_example:LeakyReLU', options: {slope: "
                                      + bomb() + "}}\n"}, says="alias bomb", proc=True),
    Hostile("alias-bomb-description", "the same, in `description`", {C: OK + f"description: {bomb()}\n"},
            says="alias bomb"),
    Hostile("alias-bomb-keys", "the same, with the aliases in mapping values",
            {C: OK + "x0: &x0 {a: 1, b: 1, c: 1, d: 1, e: 1, f: 1, g: 1, h: 1}\n"
             + "".join(f"x{i}: &x{i} {{a: *x{i-1}, b: *x{i-1}, c: *x{i-1}, d: *x{i-1}, e: *x{i-1}, "
                       f"f: *x{i-1}, g: *x{i-1}, h: *x{i-1}}}\n" for i in range(1, 8))},
            says="alias bomb"),
    Hostile("recursive-alias", "`an alias refers to the value that contains it`",
            {C: OK + "seed: &a [*a]\n"}, says="refers to the value that contains it"),
    Hostile("deep-flow-nesting", "`nested deeper than 32 levels` (was: exit 3, RecursionError)",
            {C: OK + "description: " + "[" * 5000 + "]" * 5000 + "\n"}, says="nested deeper than 32"),
    Hostile("deep-block-nesting", "the same, for block-style nesting, with the line",
            {C: OK + "description:\n" + "".join("  " * i + "-\n" for i in range(1, 100))},
            says=r":\d+: nested deeper than 32"),
    Hostile("deep-mapping-nesting", "the same, for nested mappings",
            {C: OK + "description: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n"}, says="nested deeper"),
    Hostile("file-over-1mib", "`is larger than 1024 KiB`; read no further than that",
            {C: OK + "description: '" + "a" * (1 << 20) + "'\n"}, says="larger than 1024 KiB"),
    Hostile("not-utf8", "`cannot read: not UTF-8 text (byte N)`", {C: b"input: [2, 3]\n\xff\xfe\n"},
            says="not UTF-8"),
    Hostile("utf16", "the same for a UTF-16 file", {C: OK.encode("utf-16")}, says="not UTF-8"),
    Hostile("nul-byte", "broken YAML: `unacceptable character #x0000`", {C: "input: [2, 3]\x00\n"},
            says="unacceptable character"),
    Hostile("long-value-quoted-short", "the error quotes an excerpt of the value (at most 60 characters)",
            {C: OK + "dtype: '" + "f" * 500_000 + "'\n"}, says=r"dtype: unknown value 'f+\.\.\.f+'"),
    Hostile("long-unknown-key", "unknown field, quoted as an excerpt",
            {C: OK + "? " + "k" * 100_000 + "\n: 1\n"}, says="unknown field"),
    Hostile("huge-list-in-seed", "`seed: expected an integer, got a list [...]`, an excerpt",
            {C: OK + "seed: [" + ", ".join(["1"] * 50_000) + "]\n"}, says=r"seed: expected an integer, got a list \[1, 1"),
    # -- the case file itself ---------------------------------------------------------------
    Hostile("missing-file", "`nope.yaml: no such file`", {}, args=("run", "nope.yaml"), says="no such file"),
    Hostile("folder-without-cases", "usage error: `no case files (*.yaml) in ...`", {"sub/x.txt": "x"},
            args=("run", "sub"), says="no case files", lines=4),
    Hostile("fifo", "`is a FIFO (named pipe), not a regular file` (was: a hang)", {C: fifo},
            says="FIFO", proc=True),
    Hostile("dev-zero", "`/dev/zero: is a character device, not a regular file` (was: 7.5 s, "
            "MemoryError, exit 3)", {}, args=("run", "/dev/zero"), says="character device", proc=True),
    Hostile("link-to-dev-zero", "the same through a symbolic link", {C: link("/dev/zero")},
            says="character device"),
    Hostile("dev-null", "`is a character device`", {}, args=("run", "/dev/null"), says="character device"),
    Hostile("symlink-loop", "`cannot read: Too many levels of symbolic links`",
            {C: link(lambda d: d / C)}, says="cannot read"),
    Hostile("fifo-in-folder", "a folder's FIFO named *.yaml is skipped, never opened: "
            "`no case files`", {"sub/x.yaml": fifo}, args=("run", "sub"), says="no case files", lines=4,
            proc=True),
    # -- values ---------------------------------------------------------------------------
    Hostile("seed-negative", "`seed: must be >= 0`", {C: OK + "seed: -1\n"}, says="must be >= 0"),
    Hostile("seed-string", "`seed: expected an integer, got a string`", {C: OK + "seed: abc\n"},
            says="expected an integer"),
    Hostile("seed-float", "`seed: expected an integer, got a number`", {C: OK + "seed: 1.5\n"},
            says="expected an integer"),
    Hostile("seed-huge", "a 101-digit seed is a valid seed: exit 0", {C: OK + "seed: 1" + "0" * 100 + "\n"},
            code=0, lines=0),
    Hostile("input-zero", "`input[1]: must be >= 1, got 0`", {C: "input: [2, 0]\nlayers: [{type: relu}]\n"},
            says=r"input\[1\]: must be >= 1"),
    Hostile("input-int64-overflow", "`has 1.84e+19 entries, more than any memory holds` (was: exit 3, "
            "`array is too big`)", {C: "input: [4294967296, 4294967296]\nlayers: [{type: relu}]\n"},
            says="more than any memory holds"),
    Hostile("input-bytes-overflow", "the same where only the byte count overflows int64",
            {C: "input: [65536, 65536, 65536]\nlayers: [{type: relu}]\n"}, says="more than any memory holds"),
    Hostile("input-too-many-axes", "`input: has 40 axes; at most 32`",
            {C: "input: [" + ", ".join(["1"] * 40) + "]\nlayers: [{type: relu}]\n"}, says="at most 32"),
    Hostile("input-over-memory", "refused from the shapes: `the network alone needs about ...`",
            {C: "input: [1000000, 1000000]\nlayers: [{type: relu}]\n"}, args=("run", C, "--max-memory", "1GiB"),
            says="the network alone needs"),
    Hostile("out-features-huge", "`must be <= 1,099,511,627,776 (2^40)`",
            {C: layer("{type: linear, out_features: 1000000000000000000000000000000}")}, says=r"<= 1,099"),
    Hostile("out-features-output-overflow", "`output shape [2, 1e12] has 2e+12 entries, more than any "
            "memory holds`", {C: layer("{type: linear, out_features: 1000000000000}")},
            says="more than any memory holds"),
    Hostile("stride-huge", "`stride: must be <= ...` (was: exit 3, OverflowError)",
            {C: layer("{type: conv1d, out_channels: 1, kernel: 3, stride: 99999999999999999999999}",
                      "[2, 1, 8]")}, says=r"stride: must be <="),
    Hostile("out-features-bool", "`expected an integer, got a boolean True`",
            {C: layer("{type: linear, out_features: true}")}, says="got a boolean"),
    Hostile("kernel-triple", "`expected an integer or a pair [a, b], got a list of 3`",
            {C: layer("{type: conv2d, out_channels: 1, kernel: [1, 2, 3]}", "[1, 1, 4, 4]")}, says="a list of 3"),
    Hostile("rtol-nan", "`tolerance.rtol: expected a finite number`", {C: OK + "tolerance: {rtol: .nan}\n"},
            says="finite number"),
    Hostile("rtol-inf", "the same for .inf", {C: OK + "tolerance: {rtol: .inf}\n"}, says="finite number"),
    Hostile("eps-negative", "`numerical.eps: must be > 0`", {C: OK + "numerical: {eps: -1}\n"}, says="must be > 0"),
    Hostile("l2-string", "`regularization.l2: expected a number`", {C: OK + "regularization: {l2: abc}\n"},
            says="expected a number"),
    Hostile("dtype-float16", "`dtype: unknown value 'float16'; one of: float64, float32`",
            {C: OK + "dtype: float16\n"}, says="unknown value 'float16'"),
    Hostile("name-escape", "`name: contains the control character U+001B`",
            {C: OK + 'name: "x\\e[2Jy"\n'}, says="U\\+001B"),
    Hostile("name-nul", "the same for U+0000", {C: OK + 'name: "x\\0y"\n'}, says="U\\+0000"),
    Hostile("control-char-file-name-junit", "a control character in the file name (the default name): "
            "exit 0, and the JUnit XML parses, the character written as `\\x01`",
            {"ctl\x01x.yaml": OK}, args=("run", "ctl\x01x.yaml", "--junit-xml", "j.xml"), code=0, lines=0,
            check=junit_parses),
    Hostile("unknown-top-key", "`tolerence: unknown field (did you mean `tolerance`?)`",
            {C: OK + "tolerence: {rtol: 1}\n"}, says="did you mean `tolerance`"),
    Hostile("layers-mapping", "`layers: expected a non-empty list of layers`",
            {C: "input: [2, 3]\nlayers: {type: relu}\n"}, says="non-empty list of layers"),
    Hostile("layers-empty", "the same for []", {C: "input: [2, 3]\nlayers: []\n"}, says="non-empty list"),
    Hostile("layer-scalar", "`layers[0]: expected a mapping with `type``", {C: "input: [2, 3]\nlayers: [relu]\n"},
            says="expected a mapping with `type`"),
    Hostile("layer-without-type", "`layers[0].type: missing (required)`",
            {C: "input: [2, 3]\nlayers: [{out_features: 2}]\n"}, says=r"layers\[0\]\.type: missing"),
    # -- .npy files ---------------------------------------------------------------------------
    Hostile("npy-pickle", "`cannot read x.npy as .npy`; never unpickled (allow_pickle=False)",
            {"x.npy": pickle_bomb, C: "input: {data: x.npy}\nlayers: [{type: relu}]\n"},
            says="cannot read x.npy", check=no_pwned),
    Hostile("npy-pickle-param", "the same for a parameter file",
            {"w.npy": pickle_bomb, C: layer("{type: linear, out_features: 2, params: {W: w.npy}}")},
            says="cannot read w.npy", check=no_pwned),
    Hostile("npy-garbage", "`cannot read x.npy as .npy: ...`", {"x.npy": b"not a numpy file",
            C: "input: {data: x.npy}\nlayers: [{type: relu}]\n"}, says="cannot read x.npy"),
    Hostile("npy-complex", "`x.npy holds complex128 values; real numbers are needed`",
            {"x.npy": npy(np.ones((2, 3), complex)), C: "input: {data: x.npy}\nlayers: [{type: relu}]\n"},
            says="real numbers are needed"),
    Hostile("npy-nan", "`input.data: x.npy holds NaN or Inf`",
            {"x.npy": npy(np.full((2, 3), np.nan)), C: "input: {data: x.npy}\nlayers: [{type: relu}]\n"},
            says="holds NaN or Inf"),
    Hostile("npy-params-1e308", "`layers[0].params.W: holds values too large to check in float64 "
            "(largest |value| 1e+308; at most 1.3e+154 ...)` (was: exit 1, 12 lines of warnings)",
            {"w.npy": npy(np.full((3, 2), 1e308)), C: layer("{type: linear, out_features: 2, params: {W: w.npy}}")},
            says=r"params\.W: holds values too large to check in float64"),
    Hostile("npy-input-1e300-float32", "`input.data: holds values too large to check in float32`",
            {"x.npy": npy(np.full((2, 3), 1e300)), C: "dtype: float32\ninput: {data: x.npy}\n"
             "layers: [{type: relu}]\n"}, says="too large to check in float32"),
    Hostile("npy-wrong-shape", "`has shape [5], the layer needs [3, 2]`",
            {"w.npy": npy(np.ones(5)), C: layer("{type: linear, out_features: 2, params: {W: w.npy}}")},
            says="the layer needs"),
    Hostile("npy-link-to-dev-zero", "`file not found` for a .npy that is not a regular file",
            {"x.npy": link("/dev/zero"), C: "input: {data: x.npy}\nlayers: [{type: relu}]\n"},
            says="file not found"),
    Hostile("npy-folder", "the same for a folder", {"x.npy/a": "x",
            C: "input: {data: x.npy}\nlayers: [{type: relu}]\n"}, says="file not found"),
    # -- custom layers ----------------------------------------------------------------------
    Hostile("impl-txt", "`impl file layer.txt is not a Python file (.py)` (was: exit 3, AttributeError)",
            {"layer.txt": "not python\n", C: custom("layer.txt:L")}, says=r"not a Python file"),
    Hostile("impl-txt-path", "the same for `./layer.txt:L`", {"layer.txt": "class L: pass\n",
            C: custom("./layer.txt:L")}, says=r"not a Python file"),
    Hostile("impl-missing", "`impl file not found: ...`", {C: custom("./nope.py:L")}, says="impl file not found"),
    Hostile("impl-fifo", "`impl ... is not a regular file`", {"l.py": fifo, C: custom("l.py:L")},
            says="not a regular file"),
    Hostile("impl-recursion", "`backward raised RecursionError`, the frame once with `(the line above "
            "repeated N more times)`: 3 lines (was: 985)", {"l.py": CUSTOM_RECURSES, C: custom("l.py:L")},
            says="RecursionError", lines=3),
    Hostile("impl-huge-message", "the user's exception message cut to its first line, 200 characters",
            {"l.py": CUSTOM_HUGE_ERROR, C: custom("l.py:L")}, says="forward raised ValueError: x+…", lines=3),
    Hostile("impl-sys-exit", "`forward raised SystemExit: 1` (exit 2, never the user's exit 1)",
            {"l.py": CUSTOM_EXITS, C: custom("l.py:L")}, says="raised SystemExit", lines=3),
    Hostile("impl-nan-forward", "`forward() output holds NaN or Inf`", {"l.py": CUSTOM_NAN, C: custom("l.py:L")},
            says="holds NaN or Inf"),
    # -- outputs ----------------------------------------------------------------------------
    Hostile("output-dev-full", "`error: /dev/full: No space left on device`, exit 2 (was: a 29-line "
            "traceback, exit 1)", {C: OK}, args=("run", C, "--output", "/dev/full"), says="No space left",
            proc=True),
    Hostile("json-output-dev-full", "the same with --format json", {C: OK},
            args=("run", C, "--format", "json", "-o", "/dev/full"), says="No space left", proc=True),
    Hostile("junit-dev-full", "the same for --junit-xml", {C: OK}, args=("run", C, "--junit-xml", "/dev/full"),
            says="No space left", proc=True),
    Hostile("stdout-dev-full", "`error: stdout: No space left on device`", {C: OK}, args=("run", C, ">/dev/full"),
            says="stdout: No space left", proc=True),
    Hostile("stdout-closed-pipe", "`error: stdout: Broken pipe` (rich's own exit 1 on a closed pipe is "
            "replaced)", {C: OK}, args=("run", C, "|closed"), says="stdout: Broken pipe", proc=True),
    Hostile("output-missing-folder", "`nofolder/r.json: No such file or directory`, no temporary file left",
            {C: OK}, args=("run", C, "-o", "nofolder/r.json"), says="No such file or directory"),
    Hostile("output-is-folder", "usage error: `File 'out' is a directory`", {C: OK, "out/x": "x"}, args=("run", C, "-o", "out"),
            says="is a directory", lines=4),
    Hostile("save-arrays-on-file", "usage error: `Directory 'x' is a file`", {C: OK, "x": "x"},
            args=("run", C, "--save-arrays", "x"), says="is a file", lines=4),
    # -- usage ------------------------------------------------------------------------------
    Hostile("jobs-zero", "usage error for --jobs 0", {C: OK}, args=("run", C, "--jobs", "0"), says="--jobs", lines=4),
    Hostile("sample-zero", "usage error for --sample 0", {C: OK}, args=("run", C, "--sample", "0"),
            says="--sample", lines=4),
    Hostile("max-memory-garbage", "`--max-memory: ...`", {C: OK}, args=("run", C, "--max-memory", "lots"),
            says="--max-memory"),
    Hostile("format-unknown", "usage error for --format xml", {C: OK}, args=("run", C, "--format", "xml"),
            says="--format", lines=4),
]


def make(folder: Path, files: dict) -> None:
    for name, content in files.items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(p.parent, p.name)
        elif isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")


def run_process(args: tuple, cwd: Path) -> tuple[int, str, str]:
    """``python -m gradcheck_cli ARGS`` in ``cwd``; ">FILE" sends stdout to FILE, "|closed" to
    a pipe whose reader has gone."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "gradcheck_cli", *[a for a in args if a[0] not in ">|"]]
    if "|closed" in args:
        r, w = os.pipe()
        os.close(r)
        with os.fdopen(w, "wb") as out:
            p = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE, timeout=20)
        return p.returncode, "", p.stderr.decode()
    target = next((a[1:] for a in args if a.startswith(">")), None)
    with open(target, "wb") if target else open(os.devnull, "wb") as out:
        p = subprocess.run(cmd, cwd=cwd, env=env, stdout=out if target else subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=20)
    return p.returncode, (p.stdout or b"").decode(), p.stderr.decode()


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.id for e in ENTRIES])
def test_hostile_input(entry: Hostile, tmp_path, monkeypatch):
    make(tmp_path, entry.files)
    if entry.proc:
        code, out, err = run_process(entry.args, tmp_path)
    else:
        monkeypatch.chdir(tmp_path)
        res = CliRunner().invoke(main, list(entry.args))
        code, out, err = res.exit_code, res.stdout, res.stderr
        assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert code == entry.code, err
    assert "Traceback" not in err + out
    lines = err.splitlines()
    assert len(lines) <= entry.lines, err[:2000]
    assert all(len(line) <= 400 for line in lines), err[:2000]
    if entry.says:
        assert lines and re.search(entry.says, lines[0] if entry.lines == 1 else err), err[:2000]
    leftovers = [p.name for p in tmp_path.rglob("*.gradcheck-tmp")]
    assert not leftovers
    if entry.check:
        entry.check(tmp_path)


def test_the_catalogue_is_long_and_each_entry_is_documented():
    doc = (ROOT / "docs" / "verdicts.md").read_text(encoding="utf-8")
    section = doc[doc.index("### Hostile inputs"):]
    assert len(ENTRIES) >= 60 and len({e.id for e in ENTRIES}) == len(ENTRIES)
    missing = [e.id for e in ENTRIES if f"`{e.id}`" not in section]
    assert not missing, f"not in docs/verdicts.md: {missing}"
