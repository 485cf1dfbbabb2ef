"""The package's shape: no import cycles between its modules, modules of a readable size."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).parent.parent / "gradcheck_cli"
MAX_LINES = 350        # issue 21: no module over 350 lines; split along a seam well before


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every gradcheck_cli module ``path`` imports, at the top or inside a function."""
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(0, node.level - 1)):
                base = base.rpartition(".")[0]
            mod = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            if not mod.startswith("gradcheck_cli"):
                continue
            for alias in node.names:          # `from . import x` may name a module
                sub = f"{mod}.{alias.name}"
                out.add(sub if (PKG.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                        or (PKG.parent / sub.replace(".", "/")).is_dir() else mod)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("gradcheck_cli")}
    return out - {me}


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in PKG.rglob("*.py")}


def test_no_import_cycles():
    graph = _graph()
    # a package's __init__ importing its own submodules is how it registers them, not a cycle
    def edges(m):
        return {d for d in graph.get(m, ()) if not (m + ".").startswith(d + ".")}

    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for d in edges(m):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_modules_stay_readable():
    long = {_module(p): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or not. The package's own ``__init__`` is a leaf:
    its imports are lazy (``__getattr__``), made only for the attribute asked for, and a module
    reading ``gradcheck_cli.__version__`` asks for none of them."""
    seen, todo = set(), [start]
    while todo:
        for d in graph.get(todo.pop(), ()):
            if d not in seen:
                seen.add(d)
                if d != "gradcheck_cli":
                    todo.append(d)
    return seen


def test_the_api_the_engine_and_the_renderers_read_top_down():
    """api -> check -> results, and the renderers (report/) -> results: plain data at the bottom,
    the engine and the renderers beside each other, never importing one another, the API on top.
    report/eq7.py is a command (it runs checks for its numbers) and sits with the API."""
    graph = _graph()
    results, check, api = "gradcheck_cli.results", "gradcheck_cli.check", "gradcheck_cli.api"
    renderers = {m for m in graph if m.startswith("gradcheck_cli.report") and m != "gradcheck_cli.report.eq7"}
    tops = {api, "gradcheck_cli.cli", "gradcheck_cli.cli_runtime", "gradcheck_cli.report.eq7"}
    data = _reach(graph, results) | {results}
    leaves = {m for m, deps in graph.items() if not deps}     # helpers (ranking, errors): they pull nothing in
    engine = (_reach(graph, check) | {check}) - data - leaves
    assert not _reach(graph, results) & (engine | renderers | tops)
    assert not _reach(graph, check) & (renderers | tops)
    for m in sorted(renderers):
        assert not _reach(graph, m) & (engine | tops), (m, sorted(_reach(graph, m) & (engine | tops)))
    # the API uses the engine and a renderer, and only the wrappers above it import it
    assert {check, "gradcheck_cli.report.table"} <= graph[api]
    users = {m for m, deps in graph.items() if api in deps}
    assert users <= {"gradcheck_cli", "gradcheck_cli.torch.module", "gradcheck_cli.jax.module",
                     "gradcheck_cli.pytest_plugin"}, users
