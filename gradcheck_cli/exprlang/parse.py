"""Expressions as typed in a case, parsed with Python's ``ast`` and checked against a whitelist.

Nothing here runs user text: :func:`parse` returns an ``ast`` tree whose every node is of a kind
listed in ``_ALLOWED``, whose names are plain identifiers without dunders, and whose attributes
are only ``.T`` and ``.shape``. The limits are checked on the text *before* ``ast.parse`` sees it,
so a megabyte of text or ten thousand nested brackets is refused in microseconds.
"""
from __future__ import annotations

import ast
import dataclasses

MAX_LENGTH = 2000      # characters of one expression
MAX_NESTING = 32       # brackets ( [ { open at once
MAX_DEPTH = 64         # depth of the parsed tree (a chain of 1000 unary minus signs is deep too)
ATTRIBUTES = ("T", "shape")

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.MatMult: "@",
           ast.FloorDiv: "//", ast.Mod: "%"}
_UNARY = {ast.USub: "-", ast.UAdd: "+"}
_COMPARE = {ast.Gt: ">", ast.Lt: "<", ast.GtE: ">=", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!="}
_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call, ast.Name, ast.Constant,
            ast.Attribute, ast.Subscript, ast.Slice, ast.Tuple, ast.List, ast.keyword, ast.Load,
            *_BINOPS, *_UNARY, *_COMPARE)
_WHY = {ast.Lambda: "a lambda", ast.ListComp: "a comprehension", ast.SetComp: "a comprehension",
        ast.DictComp: "a comprehension", ast.GeneratorExp: "a comprehension",
        ast.NamedExpr: "an assignment (:=)", ast.IfExp: "a conditional expression (use where)",
        ast.BoolOp: "`and`/`or` (use where, maximum, minimum)", ast.Starred: "a starred argument",
        ast.Dict: "a dict", ast.Set: "a set", ast.JoinedStr: "an f-string", ast.Await: "await",
        ast.Yield: "yield", ast.YieldFrom: "yield"}


class ExprError(Exception):
    """A fault at a position of an expression: ``col`` (0-based character) on ``line`` (1-based)."""

    def __init__(self, message: str, line: int = 1, col: int = 0) -> None:
        super().__init__(message)
        self.message, self.line, self.col = message, line, col


@dataclasses.dataclass(frozen=True)
class Parsed:
    """An expression's text and its checked tree."""

    text: str
    tree: ast.expr

    def position(self, node: ast.AST) -> tuple[int, int]:
        """(line, column) of ``node``: the text is one line of ASCII, so ast's byte columns serve."""
        return 1, getattr(node, "col_offset", 0)

    def op_position(self, node: ast.BinOp | ast.Compare) -> tuple[int, int]:
        """Where the operator of a binary operation or comparison is written."""
        right = node.right if isinstance(node, ast.BinOp) else node.comparators[0]
        symbol = (_BINOPS.get(type(node.op)) if isinstance(node, ast.BinOp)
                  else _COMPARE.get(type(node.ops[0]))) or ""
        at = self.text.find(symbol, node.left.end_col_offset or 0, right.col_offset)
        return 1, at if at >= 0 else node.col_offset


def _prescan(text: str) -> None:
    """Characters, bracket nesting and dunders, on the text alone (linear, no recursion)."""
    depth = 0
    for col, ch in enumerate(text):
        if not (ch.isascii() and ch.isprintable()):
            raise ExprError(f"character {ch!r} (U+{ord(ch):04X}) is not allowed; expressions are ASCII", 1, col)
        if ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise ExprError(f"brackets nested more than {MAX_NESTING} deep", 1, col)
        elif ch in ")]}":
            depth = max(0, depth - 1)
    if "__" in text:
        raise ExprError("`__` (dunder) is not allowed in an expression", 1, text.index("__"))


def _depth_ok(tree: ast.AST, parsed: Parsed) -> None:
    """Refuse a tree deeper than MAX_DEPTH, walking it with an explicit stack."""
    stack = [(tree, 1)]
    while stack:
        node, d = stack.pop()
        if d > MAX_DEPTH:
            raise ExprError(f"expression nested more than {MAX_DEPTH} deep", *parsed.position(node))
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))


def _check_node(node: ast.AST, parsed: Parsed) -> None:
    where = parsed.position(node)
    if isinstance(node, ast.Attribute) and node.attr not in ATTRIBUTES:
        raise ExprError(f"attribute `.{node.attr}` is not allowed; only .T and .shape",
                        1, node.value.end_col_offset or 0)
    if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str, type(None))) \
            or isinstance(node, ast.Constant) and isinstance(node.value, bool):
        raise ExprError(f"constant {node.value!r} is not allowed (numbers, strings and None are)", *where)
    if isinstance(node, ast.Call) and not isinstance(node.func, ast.Name):
        raise ExprError("only the listed functions can be called, by name", *where)
    if isinstance(node, ast.Compare) and len(node.ops) != 1:
        raise ExprError("chained comparisons are not allowed; compare two things at a time", *where)
    if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
        raise ExprError("assignment is not allowed", *where)
    if not isinstance(node, _ALLOWED):
        what = _WHY.get(type(node), f"`{type(node).__name__}`")
        raise ExprError(f"{what} is not allowed in an expression", *where)


def parse(text: object) -> Parsed:
    """Check ``text`` against the limits and the whitelist; :class:`ExprError` on any fault.

    Line breaks (a YAML block scalar) count as spaces: positions are columns of one line.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ExprError(f"expected an expression (text), got {type(text).__name__}")
    text = str(text)
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression of {len(text):,} characters; at most {MAX_LENGTH:,}", 1, MAX_LENGTH)
    text = text.replace("\r", " ").replace("\n", " ").replace("\t", " ").strip()
    _prescan(text)
    if not text:
        raise ExprError("empty expression")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        col = exc.offset - 1 if exc.offset else len(text)     # offset 0: at the end of the text
        msg = (exc.msg or "syntax error").split(" (", 1)[0]
        raise ExprError(f"syntax error: {msg}", 1, min(col, len(text))) from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise ExprError(f"cannot parse: {exc}") from None
    parsed = Parsed(text, tree.body)
    _depth_ok(tree, parsed)
    for node in ast.walk(tree):
        _check_node(node, parsed)
    return parsed


def caret(text: str, col: int, width: int = 72) -> str:
    """Two lines: the expression (cut to ``width`` characters around ``col``) and a caret under it."""
    col = min(max(col, 0), len(text))
    start = max(0, min(col - width // 2, len(text) - width))
    prefix = "..." if start > 0 else ""
    suffix = "..." if start + width < len(text) else ""
    return f"    {prefix}{text[start:start + width]}{suffix}\n    {' ' * (len(prefix) + col - start)}^"
