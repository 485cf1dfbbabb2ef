"""JUnit XML: one testsuite per case, one testcase per row."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ..results import CaseResult
from . import fmt, reproduce, wrong_line


def _count(r: CaseResult) -> int:
    return len(r.checks) + len(r.composition) + len(r.unchecked)


def _failures(r: CaseResult) -> int:
    return sum(not x.passed for x in [*r.checks, *r.composition])


def _direction(suite, r: CaseResult, d) -> None:
    """A testcase for one direction of the whole-network check."""
    case = ET.SubElement(suite, "testcase", classname=f"gradcheck.{r.name}", name=f"{d.label}[{d.form}]", file=r.file)
    if not d.passed:
        fail = ET.SubElement(case, "failure", type="GradientMismatch",
                             message=f"<grad L, d{d.direction}> analytic {d.analytic:.6g}, numerical "
                                     f"{d.numerical:.6g}: abs {fmt(d.abs_error)} > tolerance {fmt(d.tolerance)}")
        fail.text = f"reproduce: {reproduce(r)}"


# characters XML 1.0 forbids even escaped (C0 controls but tab/newline/return, surrogates, FFFE/FFFF)
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """``text`` with every character XML 1.0 cannot hold shown as ``\\xNN`` / ``\\uNNNN``."""
    return _ILLEGAL_XML.sub(lambda m: repr(m.group())[1:-1], text)


def render(results: list[CaseResult]) -> str:
    """JUnit XML for ``results``; any text a parser would refuse (a control character in a case
    name or path) is escaped, so the file always parses."""
    suites = ET.Element("testsuites", name="gradcheck",
                        tests=str(sum(_count(r) for r in results)),
                        failures=str(sum(_failures(r) for r in results)))
    for r in results:
        suite = ET.SubElement(suites, "testsuite", name=r.name, tests=str(_count(r)),
                              failures=str(_failures(r)), skipped=str(len(r.unchecked)), file=r.file)
        for i, kind in r.unchecked:
            case = ET.SubElement(suite, "testcase", classname=f"gradcheck.{r.name}",
                                 name=f"layers[{i}]", file=r.file)
            ET.SubElement(case, "skipped", message=f"layers[{i}] ({kind}) has none of the forms asked for")
        for row in r.checks:
            case = ET.SubElement(suite, "testcase", classname=f"gradcheck.{r.name}",
                                 name=f"{row.label}[{row.form}]", file=r.file)
            if not row.passed:
                msg = (f"{row.failed} of {row.checked} entries disagree; worst {list(row.worst_index)}: "
                       f"abs {fmt(row.max_abs_error)}, rel {fmt(row.max_rel_error)}")
                lines = [f"{list(e.index)}: analytic {e.analytic:.6g} numerical {e.numerical:.6g}"
                         for e in row.worst]
                lines += [wrong_line(r)] if wrong_line(r) else []
                lines.append(f"reproduce: {reproduce(r)}")
                fail = ET.SubElement(case, "failure", message=msg, type="GradientMismatch")
                fail.text = "\n".join(lines)
        for d in r.composition:
            _direction(suite, r, d)
    for el in suites.iter():
        el.attrib = {k: xml_safe(v) for k, v in el.attrib.items()}
        if el.text:
            el.text = xml_safe(el.text)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
