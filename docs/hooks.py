"""MkDocs hook: the docstrings' Sphinx roles (:class:`~pkg.mod.Name`) rendered as code, not as text.

The docstrings are written for Python's help() and Sphinx; mkdocstrings passes the roles through
as literal text (":class:" before the code span). Listed under `hooks:` in mkdocs.yml.
"""
import re

ROLE = re.compile(r":(?:class|func|meth|mod|attr|exc|data|obj):<code>(~?)([\w.]+)</code>")


def on_page_content(html, **kwargs):
    """``:class:<code>~a.b.C</code>`` -> ``<code>C</code>``; without ``~`` the full dotted name."""
    return ROLE.sub(lambda m: f"<code>{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}</code>", html)
