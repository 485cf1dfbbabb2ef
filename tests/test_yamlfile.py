"""yamlfile.py: long texts go through libyaml with the same rules as the pure-Python loader."""
import time

import pytest

from gradcheck_cli.errors import CaseError
from gradcheck_cli.yamlfile import FAST_OVER, MAX_DEPTH, parse_yaml

PAD = "# " + "p" * FAST_OVER + "\n"          # a comment long enough for the libyaml path

REFUSED = {
    "duplicate": ("a: 1\nb: 2\na: 3\n", "duplicate key `a`"),
    "deep": ("x: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n", "nested deeper"),
    "bomb": ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
             + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
                       for p, c in zip("abcdef", "bcdefg")), "alias bomb"),
    "tag": ("a: !!python/object:os.system x\n", "refused YAML tag"),
    "broken": ("a: [1, 2\n", "broken YAML"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
@pytest.mark.parametrize("long", [False, True], ids=["short", "long"])
def test_the_same_rules_on_both_paths(name, long):
    text, says = REFUSED[name]
    text = PAD + text if long else text
    with pytest.raises(CaseError, match=says):
        parse_yaml(text, "c.yaml")


def test_nesting_100000_deep_is_refused_on_the_long_path():
    """Bounded on the event stream before anything recursive runs (libyaml >= 0.2.5 may stop it
    first with its own limit: refused either way, as broken YAML)."""
    text = PAD + "x: " + "[" * 100_000 + "]" * 100_000 + "\n"
    with pytest.raises(CaseError, match="nested deeper|maximum nesting depth"):
        parse_yaml(text, "c.yaml")


def test_both_paths_give_the_same_document():
    text = "name: x\nlayers:\n  - &l {type: linear, out_features: 3}\n  - *l\n  - <<: *l\n    bias: false\n"
    assert parse_yaml(PAD + text, "c.yaml") == parse_yaml(text, "c.yaml")


def test_a_megabyte_scalar_is_read_in_well_under_a_second():
    text = "forward: x" + " + x" * 250_000 + "\n"
    started = time.perf_counter()
    assert parse_yaml(text, "c.yaml")["forward"].startswith("x + x")
    assert time.perf_counter() - started < 1.0
