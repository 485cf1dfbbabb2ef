"""Plain-text layout that fits a width: grids that abbreviate or drop columns rather than wrap a
cell, text wrapped at word boundaries, segments stacked, command lines continued with ``\\``.

Every function returns lines no wider than ``width`` terminal cells (``rich.cells.cell_len``,
so wide characters in a case name count twice). A line is a list of (text, style) spans; style is
a rich style string or "" and only colours the text, it never changes its width.
"""
from __future__ import annotations

import dataclasses
import shlex
import textwrap

from rich.cells import cell_len

Span = tuple[str, str]
Line = list[Span]
ELLIPSIS = "…"


def plain(line: Line) -> str:
    """The text of a line without its styles."""
    return "".join(text for text, _ in line)


def shorten(text: str, width: int) -> str:
    """``text`` cut in the middle with an ellipsis to at most ``width`` cells (its ends are what
    tell two names apart: "cnn-deep-…-pad")."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    head, tail = "", ""
    for k in range(len(text)):                      # grow both ends alternately, head first
        side = text[k // 2] if k % 2 == 0 else text[len(text) - 1 - k // 2]
        if cell_len(head) + cell_len(tail) + cell_len(side) + 1 > width:
            break
        if k % 2 == 0:
            head += side
        else:
            tail = side + tail
    return head + ELLIPSIS + tail


def hard_cut(text: str, width: int, after: str = "/") -> list[str]:
    """``text`` in pieces of at most ``width`` cells (the last resort for a single long word),
    each cut after the last ``after`` character that leaves a piece at least half as wide."""
    out, cur = [], ""
    for ch in text:
        if cur and cell_len(cur + ch) > width:
            at = max(cur.rfind(c) for c in after) + 1 if after else 0
            keep = at if at >= len(cur) // 2 else len(cur)
            out.append(cur[:keep])
            cur = cur[keep:]
        cur += ch
    return out + [cur] if cur or not out else out


def wrap(text: str, width: int, indent: str = "", style: str = "") -> list[Line]:
    """A paragraph wrapped at spaces; continuation lines indented two more than ``indent``."""
    width = max(width, len(indent) + 8)
    lines = textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent + "  ",
                          break_on_hyphens=False, break_long_words=True) or [indent]
    out = []
    for ln in lines:                              # textwrap counts characters, not cells
        out += [[(piece, style)] for piece in hard_cut(ln, width)]
    return out


def stack(segments: list[tuple[str, str, str]], width: int, indent: str = "  ") -> list[Line]:
    """Segments (joiner, text, style) packed greedily into lines; a segment that does not fit on
    the current line starts the next one (indented, without its joiner)."""
    lines: list[Line] = [[]]
    used = 0
    for joiner, text, style in segments:
        if lines[-1] and used + cell_len(joiner + text) > width:
            lines.append([(indent, "")])
            used = len(indent)
            joiner = ""
        for k, piece in enumerate(hard_cut(text, max(width - used - cell_len(joiner), 8))):
            if k:
                lines.append([(indent, "")])
                used = len(indent)
            lines[-1] += [(joiner if k == 0 else "", ""), (piece, style)]
            used += cell_len((joiner if k == 0 else "") + piece)
    return lines


def command(argv: list[str], width: int, prefix: str = "") -> list[Line]:
    """A shell command that can be pasted as printed: words quoted, lines continued with `` \\``
    at word boundaries (and inside a long unquoted word, which the shell joins back)."""
    words = [shlex.quote(a) for a in argv]
    lines, cur = [], prefix
    for w in words:
        sep = " " if cur.strip() else ""
        if cur.strip() and cell_len(cur + sep + w) + 2 > width:
            lines.append(cur + " \\")
            cur, sep = "    ", ""
        room = width - cell_len(cur + sep) - 2
        while cell_len(w) > room and not w.startswith("'") and room > 8:
            part = hard_cut(w, room)[0]            # backslash-newline inside a word: joined back
            lines.append(cur + sep + part + "\\")
            w, cur, sep = w[len(part):], "", ""
            room = width - 2
        cur += sep + w
    lines.append(cur)
    return [[(ln, "")] for ln in lines]


@dataclasses.dataclass
class Col:
    """One column of a grid: a heading, its cells, and what it may become when space is short.

    ``short``/``compact`` are the heading and cells of the narrow variant (None: the same);
    ``drop`` ranks the columns that may be left out, 1 first (0: never dropped); ``shrink``
    allows cutting its cells with an ellipsis (a name) as the very last step.
    """

    head: str
    cells: list[str]
    right: bool = False
    short: str | None = None
    compact: list[str] | None = None
    drop: int = 0
    shrink: int = 0                 # the narrowest this column may become (0: never cut)
    styles: list[str] | None = None

    def variant(self, narrow: bool) -> tuple[str, list[str]]:
        if not narrow:
            return self.head, self.cells
        return (self.short if self.short is not None else self.head,
                self.compact if self.compact is not None else self.cells)


def _widths(cols: list[tuple[str, list[str]]], header: bool) -> list[int]:
    return [max([cell_len(h) if header else 0, *map(cell_len, cells)]) for h, cells in cols]


def _attempts(cols: list[Col]):
    """(gap, narrow, dropped columns) from the roomiest layout to the tightest."""
    optional = sorted((c for c in cols if c.drop), key=lambda c: c.drop)
    yield 2, False, ()
    yield 2, True, ()
    yield 1, True, ()
    for k in range(1, len(optional) + 1):
        yield 1, True, tuple(optional[:k])


def grid(cols: list[Col], width: int, indent: str = " ", header: bool = True, rule: bool = True) -> list[Line] | None:
    """The columns as aligned lines no wider than ``width``, or None when no layout fits.

    Tries, in order: full headings and cells; the narrow variants; one space between columns;
    then leaves out the droppable columns one by one; at last cuts the shrinkable ones.
    """
    if not cols:
        return []
    for gap, narrow, dropped in _attempts(cols):
        keep = [c for c in cols if c not in dropped]
        variants = [c.variant(narrow) for c in keep]
        ws = _widths(variants, header)
        total = len(indent) + sum(ws) + gap * (len(ws) - 1)
        if total <= width:
            return _draw(keep, variants, ws, gap, indent, header, rule)
    # the tightest layout still too wide: cut the shrinkable columns down to what is left
    keep = [c for c in cols if not c.drop]
    variants = [c.variant(True) for c in keep]
    ws = _widths(variants, header)
    excess = len(indent) + sum(ws) + len(ws) - 1 - width
    for k, c in enumerate(keep):
        if excess > 0 and c.shrink and ws[k] > c.shrink:
            cut = min(excess, ws[k] - c.shrink)
            ws[k] -= cut
            excess -= cut
    if excess > 0:
        return None
    return _draw(keep, variants, ws, 1, indent, header, rule)


def _draw(cols, variants, ws, gap, indent, header, rule) -> list[Line]:
    def cell(text, w, right):
        text = shorten(text, w)
        pad = " " * (w - cell_len(text))
        return pad + text if right else text + pad

    out: list[Line] = []
    sep = " " * gap
    if header:
        out.append([(indent + sep.join(cell(h, w, c.right) for (h, _), w, c in zip(variants, ws, cols)).rstrip(),
                     "bold")])
        if rule:
            out.append([(indent + "─" * (sum(ws) + gap * (len(ws) - 1)), "dim")])
    n = max((len(cells) for _, cells in variants), default=0)
    for r in range(n):
        line: Line = [(indent, "")]
        for k, ((_, cells), w, c) in enumerate(zip(variants, ws, cols)):
            style = c.styles[r] if c.styles else ""
            text = cell(cells[r], w, c.right) if k < len(cols) - 1 else cell(cells[r], w, c.right).rstrip()
            line += [(sep if k else "", ""), (text, style)]
        out.append(line)
    return out


def records(cols: list[Col], width: int, indent: str = " ") -> list[Line]:
    """The columns stacked: one block per row, "heading: value" packed into lines (for widths
    where no grid fits)."""
    out: list[Line] = []
    n = max((len(c.cells) for c in cols), default=0)
    for r in range(n):
        segs = [("" if k == 0 else "  ", f"{c.short or c.head}: {(c.compact or c.cells)[r]}",
                 c.styles[r] if c.styles else "") for k, c in enumerate(cols)]
        out += [[(indent, "")] + ln for ln in stack(segs, width - len(indent), indent="  ")]
    return out


def table(cols: list[Col], width: int, indent: str = " ") -> list[Line]:
    """A grid when one fits, else records."""
    return grid(cols, width, indent) or records(cols, width, indent)
