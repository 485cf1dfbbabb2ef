"""JSON report: deterministic (same case and seed -> same bytes; no timings)."""
from __future__ import annotations

import json

from .. import __version__
from ..results import CaseResult


def render(results: list[CaseResult]) -> str:
    doc = {"version": __version__, "passed": all(r.passed for r in results),
           "cases": [r.to_json() for r in results]}
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
