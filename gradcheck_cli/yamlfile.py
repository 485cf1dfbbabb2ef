"""Reading a case file safely: a regular file of bounded size, YAML with no duplicate keys,
no alias bombs and bounded nesting. cases.py turns the document into a Case.
"""
from __future__ import annotations

import functools
import os
import stat
from pathlib import Path
from typing import Any

from .errors import CaseError

MAX_CASE_BYTES = 1 << 20        # a case is a short text; arrays come from .npy files


# ------------------------------------------------------------------------------------------
# the YAML loader
# ------------------------------------------------------------------------------------------
MAX_ENTRIES = 1 << 40      # entries of one tensor: 8 TiB in float64, beyond any machine; keeps
                           # every byte count (entries * 8 * copies) far inside int64
MAX_DIMS = 32              # axes of one tensor (numpy allows 64)
MAX_DEPTH = 32             # nesting levels of the document (a case needs about 5)
MAX_NODES = 100_000        # values in the document with every alias expanded
FAST_OVER = 64 << 10       # texts longer than this are parsed by libyaml (same rules)


class RefusedYAML(Exception):
    """A document :class:`StrictLoader` refuses: a duplicate key, an alias bomb, deep nesting."""

    def __init__(self, message: str, mark: Any = None) -> None:
        super().__init__(message)
        self.message, self.line = message, (mark.line + 1 if mark is not None else None)


@functools.cache
def _strict_loader():
    """StrictLoader, made on first use: importing yaml is left until a case is read."""
    import yaml
    from yaml.nodes import MappingNode, SequenceNode

    def _no_duplicates(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue        # `<<: *defaults` then overriding a key is fine
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue        # an unhashable key: the base class reports it
                if first is not None:
                    raise RefusedYAML(f"duplicate key `{_key(key)}` (first on line {first}); "
                                      "each field may be given once", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return yaml.SafeLoader.construct_mapping(self, node, deep)

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader (no Python objects) that also refuses

        * a key given twice in one mapping (YAML says keys are unique; PyYAML lets the last win,
          so the check would run something other than what the user wrote);
        * nesting deeper than MAX_DEPTH (the composer recurses: RecursionError otherwise);
        * more than MAX_NODES values once aliases are expanded (a "billion laughs" bomb).

        Aliases are allowed and counted, not rejected: sharing one block of options between
        layers (``&opts`` / ``*opts``, ``<<: *opts``) is legitimate YAML. The count is taken on
        the composed graph with each node's expanded size memoised, so a bomb is refused in
        microseconds, without ever being expanded.
        """

        _depth = 0

        def compose_node(self, parent, index):
            self._depth += 1
            try:
                if self._depth > MAX_DEPTH:
                    raise RefusedYAML(f"nested deeper than {MAX_DEPTH} levels; a case is a few "
                                      "levels deep", self.peek_event().start_mark)
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def get_single_node(self):
            node = super().get_single_node()
            if node is not None:
                _bound_expansion(node)
            return node

        construct_mapping = _no_duplicates

    def _bound_expansion(root) -> None:
        size: dict[int, int] = {}       # id(node) -> values under it, aliases expanded
        visiting: set[int] = set()
        stack = [(root, False)]
        while stack:
            node, children_done = stack.pop()
            if id(node) in size:
                continue
            kids = _children(node)
            if children_done or not kids:
                size[id(node)] = 1 + sum(size[id(k)] for k in kids)
                if size[id(node)] > MAX_NODES:
                    raise RefusedYAML(f"more than {MAX_NODES:,} values once its aliases (*name) are "
                                      "expanded: refused (an alias bomb?)", node.start_mark)
            elif id(node) in visiting:
                raise RefusedYAML("an alias refers to the value that contains it (a recursive "
                                  "structure)", node.start_mark)
            else:
                visiting.add(id(node))
                stack.append((node, True))
                stack += [(k, False) for k in kids if id(k) not in size]

    class FastLoader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):
        """libyaml's parser with StrictLoader's rules, for long texts (pure-Python scanning takes
        seconds over a megabyte): nesting is bounded on the event stream before anything
        recursive runs, the expansion on the composed graph, duplicate keys as StrictLoader."""

        construct_mapping = _no_duplicates

        def load_strict(self):
            depth = 0
            for event in yaml.parse(self._text, Loader=FastLoader):
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
                    if depth > MAX_DEPTH:
                        raise RefusedYAML(f"nested deeper than {MAX_DEPTH} levels; a case is a few "
                                          "levels deep", event.start_mark)
                elif isinstance(event, yaml.CollectionEndEvent):
                    depth -= 1
            node = self.get_single_node()
            if node is None:
                return None
            _bound_expansion(node)
            return self.construct_document(node)

        def __init__(self, text):
            super().__init__(text)
            self._text = text

    StrictLoader.fast = FastLoader

    def _children(node) -> list:
        if isinstance(node, SequenceNode):
            return list(node.value)
        if isinstance(node, MappingNode):
            return [n for pair in node.value for n in pair]
        return []

    return StrictLoader


def read_case_text(path: Path) -> str:
    """The text of a case file: a regular file (not a FIFO or a device, which could block or
    never end) of at most MAX_CASE_BYTES, in UTF-8."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CaseError(str(path), "", "no such file") from None
    except OSError as exc:
        raise CaseError(str(path), "", f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CaseError(str(path), "", "is a folder, not a case file")
    if not stat.S_ISREG(st.st_mode):
        raise CaseError(str(path), "", f"is {_file_kind(st.st_mode)}, not a regular file; "
                                       "a case file must be a regular file")
    try:
        # O_NONBLOCK: should the file have been swapped for a FIFO since the stat, open does not wait
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise CaseError(str(path), "", "is not a regular file")
            data = fh.read(MAX_CASE_BYTES + 1)
    except OSError as exc:
        raise CaseError(str(path), "", f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CASE_BYTES:
        raise CaseError(str(path), "", f"is larger than {MAX_CASE_BYTES // 1024} KiB; a case file is "
                                       "a short YAML text (arrays go in .npy files)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CaseError(str(path), "", f"cannot read: not UTF-8 text (byte {exc.start})") from None


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def parse_yaml(text: str, file: str) -> Any:
    """Safe-load YAML with :class:`StrictLoader`; a broken document, an unsafe tag, a duplicate
    key, an alias bomb or too deep nesting is a CaseError with its line."""
    import yaml

    try:
        strict = _strict_loader()
        loader = strict.fast(text) if len(text) > FAST_OVER else strict(text)
        try:
            return loader.load_strict() if len(text) > FAST_OVER else loader.get_single_data()
        finally:
            loader.dispose()
    except RefusedYAML as exc:
        raise CaseError(file, "", exc.message, exc.line) from None
    except yaml.constructor.ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        tag = getattr(exc, "problem", "") or ""
        raise CaseError(file, "", f"refused YAML tag ({excerpt(tag.strip())}); cases are loaded "
                                  "safely, no Python objects", line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CaseError(file, "", f"broken YAML: {excerpt(problem, 120)}", line) from None


def excerpt(x: Any, limit: int = 60) -> str:
    """``repr(x)`` cut to about ``limit`` characters: error lines quote a value, never all of it.
    reprlib stops after a few items and levels, so even a huge shared structure is cheap."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 2, 4, 4, 4, 4
    r.maxstring = r.maxother = r.maxlong = limit
    text = r.repr(x)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _key(k: Any) -> str:
    """A mapping key as it appears in a field path: as written if a short plain string."""
    return k if isinstance(k, str) and k.isprintable() and len(k) <= 40 else excerpt(k, 40)
