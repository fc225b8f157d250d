"""A Sphinx extension (``_config.yml``: ``sphinx.extra_extensions``) that fixes what the browser check
(:mod:`analysis.browser`) found wrong in jupyter-book's HTML, on every page:

* **Inline scripts written twice.** Under Sphinx 7.4, a body-only script that an extension adds after the
  builder started (sphinx-thebe's ``const THEBE_JS_URL = ...``, sphinx-togglebutton's selector) is listed
  twice: once from the registry (file name ``''``) and once given to the builder directly (file name
  ``None``), which do not compare equal. The second ``const`` declaration is a ``SyntaxError`` in every
  reader's console. :func:`dedupe_scripts` keeps the first copy of each identical script.

The theme's "invalid theme mode" console error on a first visit is fixed in ``_config.yml`` itself
(``html_context: {default_mode: light}``).
"""
from __future__ import annotations


def _key(script) -> tuple:
    """What makes two script entries the same script: file name ('' for none) and attributes (body included)."""
    attrs = getattr(script, "attributes", {}) or {}
    return (str(getattr(script, "filename", script) or ""), tuple(sorted((k, str(v)) for k, v in attrs.items())))


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """``html-page-context`` hook: drop repeated identical entries from the page's ``script_files``."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for s in scripts:
        k = _key(s)
        if k not in seen:
            seen.add(k)
            kept.append(s)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", dedupe_scripts)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
