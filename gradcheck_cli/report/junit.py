"""JUnit XML: one testsuite per case, one testcase per row."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from ..check import CaseResult
from . import fmt, reproduce


def render(results: list[CaseResult]) -> str:
    suites = ET.Element("testsuites", name="gradcheck",
                        tests=str(sum(len(r.rows) + len(r.unchecked) for r in results)),
                        failures=str(sum(not row.passed for r in results for row in r.rows)))
    for r in results:
        suite = ET.SubElement(suites, "testsuite", name=r.name, tests=str(len(r.rows) + len(r.unchecked)),
                              failures=str(sum(not row.passed for row in r.rows)),
                              skipped=str(len(r.unchecked)), file=r.file)
        for i, kind in r.unchecked:
            case = ET.SubElement(suite, "testcase", classname=f"gradcheck.{r.name}",
                                 name=f"layers[{i}]", file=r.file)
            ET.SubElement(case, "skipped", message=f"layers[{i}] ({kind}) has none of the forms asked for")
        for row in r.rows:
            case = ET.SubElement(suite, "testcase", classname=f"gradcheck.{r.name}",
                                 name=f"{row.label}[{row.form}]", file=r.file)
            if not row.passed:
                msg = (f"{row.failed} of {row.checked} entries disagree; worst {list(row.worst_index)}: "
                       f"abs {fmt(row.max_abs_error)}, rel {fmt(row.max_rel_error)}")
                lines = [f"{list(e.index)}: analytic {e.analytic:.6g} numerical {e.numerical:.6g}"
                         for e in row.worst]
                lines.append(f"reproduce: {reproduce(r)}")
                fail = ET.SubElement(case, "failure", message=msg, type="GradientMismatch")
                fail.text = "\n".join(lines)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
