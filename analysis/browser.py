"""The built book checked as a reader meets it: links, a real headless browser, an accessibility scan, search.

Two halves over a built book's HTML folder (``<root>/_build/html``):

* **No browser** (pure Python, :mod:`html.parser`): :func:`pages` lists the book's pages in TOC order;
  :func:`broken_links` finds every internal ``href``/``src`` and ``#anchor`` that does not resolve to a file or
  to an element id of its target page; :func:`external_links` lists links that leave the book, and
  :func:`remote_resources` the scripts, styles and images among them (there must be none: the book is read
  offline).
* **A real browser**: Debian's headless Chromium driven by Selenium through Debian's ``chromedriver``
  (:func:`browser`; never Selenium Manager, nothing is downloaded, and every remote host name fails to
  resolve, so a page that needs the network shows it as a console error). :func:`check_page` opens one page
  by its ``file://`` URL, as an offline reader would, and collects console errors, images that did not load,
  figures printed as text or described only by their file name, math that MathJax left raw, axe-core
  violations and a full-page screenshot; :func:`check_search` runs the search from a server on 127.0.0.1
  (:func:`serve`: Sphinx's search fetches each result page for its snippet, which Chromium refuses between
  ``file://`` pages); :func:`check_book` does all of it for every page in one browser session and returns a
  :class:`BookReport`.

Accessibility: axe-core (the ``axe.min.js`` that the pinned ``axe-core-python`` wheel bundles) runs on
every page; a violation of impact *serious* or *critical* fails the check unless the allow-list
(``book/a11y-allowlist.yml`` of the book root, :func:`load_allowlist`) names its rule, the pages and the
elements it is accepted on, and why.

Command line: ``python -m analysis check [--root ROOT]`` checks a built book; ``python -m analysis book
--check`` builds, then checks. Screenshots go to ``<root>/_build/screenshots/<page>.png`` (git-ignored).
"""
from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_ENV, DRIVER_ENV = "STUDY_CHROMIUM", "STUDY_CHROMEDRIVER"
SETUP_HINT = "run bash .ci/setup (it installs Debian's chromium and chromium-driver, selenium and axe-core-python)"
ALLOWLIST = Path("book") / "a11y-allowlist.yml"
BLOCKING_IMPACTS = ("serious", "critical")
SCREENSHOTS = "screenshots"  # <root>/_build/screenshots
MAX_SCREENSHOT_HEIGHT = 16000  # CSS pixels; Chromium cannot capture much taller images in one piece
SKIP_DIRS = ("_static", "_sources", "_images", "jupyter_execute")
# where a link counts as a resource the page loads (must be local) rather than a link a reader follows
RESOURCE_TAGS = {("script", "src"), ("img", "src"), ("iframe", "src"), ("source", "src"), ("video", "src"),
                 ("audio", "src"), ("embed", "src"), ("input", "src"), ("object", "data")}
RESOURCE_RELS = {"stylesheet", "preload", "modulepreload", "icon", "shortcut", "apple-touch-icon", "manifest",
                 "prefetch"}
NOT_CHECKED = ("data:", "javascript:", "blob:", "about:")


class BrowserUnavailable(RuntimeError):
    """Chromium, its driver or Selenium is missing; the message says how to install them."""


# ----------------------------------------------------------------------------- pages and links (no browser)
def html_root(root: Path) -> Path:
    """The built HTML folder of a book root (``<root>/_build/html``), or ``root`` itself when it is one.

    Raises :class:`FileNotFoundError` naming the build command when there is no built book."""
    root = Path(root)
    html = root if (root / "searchindex.js").is_file() else root / "_build" / "html"
    if not (html / "searchindex.js").is_file():
        raise FileNotFoundError(f"no built book in {html} (searchindex.js missing); build it first: "
                                f"python -m analysis book --root {root}")
    return html


def pages(html: Path) -> list[str]:
    """The book's pages in TOC order, as paths relative to the HTML folder (``book/intro.html``, ...).

    Read from the ``_toc.yml`` of the book root (``html/../..``); when the folder is not inside a book root,
    from the built navigation of the first page (``index.html``'s redirect target). Raises
    :class:`FileNotFoundError` naming any page the TOC lists but the build lacks."""
    from analysis.pdf import toc_entries

    html = Path(html)
    toc = html.parent.parent / "_toc.yml"
    if toc.is_file():
        rels = [re.sub(r"\.(md|ipynb|rst)$", "", f) + ".html" for f, _ in toc_entries(html.parent.parent)]
    else:
        rels = _nav_pages(html)
    missing = [r for r in rels if not (html / r).is_file()]
    if missing:
        raise FileNotFoundError(f"the TOC lists pages the build in {html} lacks: {', '.join(missing)}; rebuild: "
                                f"python -m analysis book --root {html.parent.parent}")
    return rels


def _nav_pages(html: Path) -> list[str]:
    """Pages in the order of the built sidebar navigation, starting at ``index.html``'s redirect target."""
    m = re.search(r'url=([^"\s>]+)', (html / "index.html").read_text(errors="replace"))
    first = m.group(1) if m else "index.html"
    parsed = _parse(html / first)
    rels = [first]
    base = (html / first).parent
    for tag, _, url, classes in parsed.links:
        path = urlsplit(url).path
        if tag != "a" or not {"reference", "internal"} <= set(classes) or not path or _external(url):
            continue
        target = (base / unquote(path)).resolve()
        if target.is_file() and target.is_relative_to(html.resolve()):
            rel = target.relative_to(html.resolve()).as_posix()
            if rel not in rels and not rel.startswith(SKIP_DIRS) and rel not in ("genindex.html", "search.html"):
                rels.append(rel)
    return rels


@dataclass(frozen=True)
class Link:
    """One ``href``/``src`` of a built page: where it is, what it points at, and what is wrong (if anything)."""

    page: str  # relative to the HTML folder
    tag: str
    attr: str
    url: str
    resource: bool  # loaded by the page (script, style, image, ...) rather than followed by a reader
    problem: str = ""

    def __str__(self) -> str:
        what = f"<{self.tag} {self.attr}={self.url!r}>"
        return f"{self.page}: {what}" + (f": {self.problem}" if self.problem else "")


class _Collector(HTMLParser):
    """Element ids and link attributes of one HTML document."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str, str, tuple[str, ...]]] = []  # (tag, attr, url, classes or rel)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        for attr in ("href", "src", "data"):
            if a.get(attr) is not None and (attr != "data" or tag == "object"):
                kinds = (a.get("rel") or "").lower().split() if tag == "link" else (a.get("class") or "").split()
                self.links.append((tag, attr, a[attr].strip(), tuple(kinds)))

    handle_startendtag = handle_starttag


_PARSED: dict[tuple[str, int], _Collector] = {}


def _parse(path: Path) -> _Collector:
    """Ids and links of an HTML file (cached by path and modification time)."""
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _PARSED:
        c = _Collector()
        c.feed(path.read_text(encoding="utf-8", errors="replace"))
        c.close()
        _PARSED[key] = c
    return _PARSED[key]


def html_files(html: Path) -> list[str]:
    """Every built HTML page (relative paths), the TOC's pages first, then search, index and any other page;
    theme assets (``_static``, ``_sources``, ...) are not pages."""
    html = Path(html)
    try:
        first = pages(html)
    except (FileNotFoundError, KeyError):
        first = []
    rest = sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                  if not p.relative_to(html).as_posix().startswith(SKIP_DIRS))
    return first + [r for r in rest if r not in first]


def _is_resource(tag: str, attr: str, kinds: tuple[str, ...]) -> bool:
    return (tag, attr) in RESOURCE_TAGS or (tag == "link" and bool(set(kinds) & RESOURCE_RELS))


def _links(html: Path, rels: list[str] | None = None):
    """``(page, tag, attr, url, kinds)`` for every link of ``rels`` (default: :func:`html_files`)."""
    html = Path(html)
    for rel in rels if rels is not None else html_files(html):
        for tag, attr, url, kinds in _parse(html / rel).links:
            yield rel, tag, attr, url, kinds


def _external(url: str) -> bool:
    """True for a URL that leaves the book (``https:``, ``mailto:``, ``//host/...``); ``data:`` and the like
    are part of the page."""
    parts = urlsplit(url)
    inline = url.lower().startswith(NOT_CHECKED) or parts.scheme == "file"
    return (bool(parts.scheme) and not inline) or url.startswith("//")


def broken_links(html: Path, rels: list[str] | None = None) -> list[Link]:
    """Every internal link (``href``, ``src``) of the built pages that does not resolve.

    A link resolves when its path (query string dropped, percent-decoding undone) names a file inside the
    HTML folder (a folder: its ``index.html``) and, for a ``#fragment`` into an HTML page, that page has an
    element with that ``id`` (or an ``<a name>``). External links (``http:``, ``mailto:``, ...) and ``data:``
    URLs are not checked here (see :func:`external_links`)."""
    html = Path(html).resolve()
    broken = []
    for rel, tag, attr, url, kinds in _links(html, rels):
        if not url or url.lower().startswith(NOT_CHECKED) or _external(url):
            continue
        parts = urlsplit(url)
        page = html / rel
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        link = Link(rel, tag, attr, url, _is_resource(tag, attr, kinds))
        if not target.is_relative_to(html):
            broken.append(_with(link, f"points outside the built book ({target})"))
            continue
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(_with(link, f"no file {target.relative_to(html).as_posix()}"))
            continue
        frag = unquote(parts.fragment)
        if frag and target.suffix == ".html" and frag not in _parse(target).ids:
            broken.append(_with(link, f"no element id={frag!r} in {target.relative_to(html).as_posix()}"))
    return broken


def _with(link: Link, problem: str) -> Link:
    return Link(link.page, link.tag, link.attr, link.url, link.resource, problem)


def external_links(html: Path, rels: list[str] | None = None) -> list[Link]:
    """Every link of the built pages that leaves the book (``http(s):``, ``mailto:``, protocol-relative ...);
    ``resource`` is True for scripts, styles, images and the like the page itself would load."""
    return [Link(rel, tag, attr, url, _is_resource(tag, attr, kinds))
            for rel, tag, attr, url, kinds in _links(html, rels) if url and _external(url)]


def remote_resources(html: Path, rels: list[str] | None = None) -> list[Link]:
    """The external links a page would *load* (scripts, styles, images, ...): must be none, the book is read
    offline."""
    return [_with(l, "a remote resource: the book must not need the network")
            for l in external_links(html, rels) if l.resource]


# ----------------------------------------------------------------------------- accessibility allow-list
@dataclass(frozen=True)
class Allowed:
    """One accepted axe-core violation: its rule id, the pages (glob over the page path) and the elements it is
    accepted on (``where``: a substring of the element's path ``html body.x div#id.cls ...``, e.g.
    ``.bd-sidebar-primary`` for the theme's sidebar; '' for any), and why."""

    rule: str
    why: str
    pages: str = "*"
    where: str = ""

    def covers(self, page: str, rule: str, path: str) -> bool:
        """True when this entry accepts ``rule`` on ``page`` for the element at ``path`` (tag#id.class chain)."""
        return rule == self.rule and fnmatch.fnmatch(page, self.pages) and self.where in path

    def __str__(self) -> str:
        where = f" inside {self.where!r}" if self.where else ""
        return f"{self.rule} (pages {self.pages}{where}): {self.why}"


def load_allowlist(path: Path) -> list[Allowed]:
    """The allow-list at ``path`` (a YAML list of ``{rule, pages, where, why}``); an empty list when the file
    does not exist. Every entry needs a rule and a one-line ``why``; anything else raises ``ValueError``
    naming the file and the entry."""
    import yaml

    path = Path(path)
    if not path.is_file():
        return []
    data = yaml.safe_load(path.read_text()) or []
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of {{rule, pages, where, why}} entries, got {type(data).__name__}")
    out = []
    for i, e in enumerate(data):
        extra = set(e) - {"rule", "pages", "where", "why"} if isinstance(e, dict) else {"(not a mapping)"}
        if extra or not e.get("rule") or not str(e.get("why") or "").strip():
            raise ValueError(f"{path}: entry {i} {e!r} needs 'rule' and a one-line 'why' (optional 'pages' glob, "
                             f"'where' selector substring); unknown keys: {sorted(extra) or 'none'}")
        out.append(Allowed(rule=e["rule"], why=" ".join(str(e["why"]).split()), pages=e.get("pages", "*"),
                           where=e.get("where", "")))
    return out


# ----------------------------------------------------------------------------- the browser
def find_chromium() -> tuple[Path, Path]:
    """``(chromium, chromedriver)``: ``$STUDY_CHROMIUM``/``$STUDY_CHROMEDRIVER`` if set, else Debian's
    ``/usr/bin/chromium`` and ``/usr/bin/chromedriver``. Raises :class:`BrowserUnavailable` naming the fix."""
    found = []
    for env, default, package in ((BROWSER_ENV, CHROMIUM, "chromium"), (DRIVER_ENV, CHROMEDRIVER, "chromium-driver")):
        p = Path(os.environ.get(env) or (default if default.exists() else shutil.which(default.name) or default))
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise BrowserUnavailable(f"{default.name} not found ({p}; Debian package {package}): {SETUP_HINT}, "
                                     f"or set {env} to its path")
        found.append(p)
    return found[0], found[1]


def _options(chromium: Path, width: int, height: int):
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(chromium)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps", "--hide-scrollbars",
                "--force-color-profile=srgb", "--lang=en-US", f"--window-size={width},{height}",
                # an offline reader: every remote host fails to resolve, so a page that needs one logs an error
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return opts


@contextlib.contextmanager
def browser(*, width: int = 1280, height: int = 900, timeout: float = 30.0):
    """A Selenium session on Debian's headless Chromium (``with browser() as driver: ...``).

    The driver is Debian's ``chromedriver`` given by path and ``SE_OFFLINE=true`` is set, so Selenium Manager
    never runs and nothing is downloaded. Raises :class:`BrowserUnavailable` when Chromium, its driver or the
    ``selenium`` package is missing."""
    chromium, driver_path = find_chromium()
    try:
        from selenium import webdriver
    except ImportError as e:
        raise BrowserUnavailable(f"the selenium package is not installed ({e}): {SETUP_HINT}") from None
    os.environ["SE_OFFLINE"] = "true"
    service = webdriver.ChromeService(executable_path=str(driver_path))
    try:
        driver = webdriver.Chrome(service=service, options=_options(chromium, width, height))
    except Exception as e:  # selenium's own errors: name the binaries so the reader can check them
        raise BrowserUnavailable(f"could not start {chromium} with {driver_path}: {str(e).strip()[:500]}; "
                                 f"check both come from the same Debian chromium version ({SETUP_HINT})") from e
    driver.set_page_load_timeout(timeout)
    driver.set_script_timeout(timeout)
    try:
        yield driver
    finally:
        driver.quit()


def axe_source() -> str:
    """The text of axe-core's ``axe.min.js`` (4.4.3) bundled in the pinned ``axe-core-python`` wheel, injected
    into each page as a script, so nothing is fetched. (``axe-selenium-python`` 3.x needs Python >= 3.12 and
    its 2.1.6 bundles the 2018 axe-core 3.1.)"""
    try:
        import axe_core_python
    except ImportError as e:
        raise BrowserUnavailable(f"axe-core-python is not installed ({e}): {SETUP_HINT}") from None
    js = Path(axe_core_python.__file__).parent / "axe.min.js"
    if not js.is_file():
        raise BrowserUnavailable(f"no {js}: reinstall the pinned axe-core-python ({SETUP_HINT})")
    return js.read_text(encoding="utf-8")


# JavaScript run in the page (the last argument of an async script is its callback)
_WAIT_IMAGES = """
const done = arguments[arguments.length - 1];
const imgs = Array.from(document.images);
imgs.forEach(i => { i.loading = 'eager'; });
Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.addEventListener('load', r);
    i.addEventListener('error', r); setTimeout(r, 10000); })))
  .then(() => done(imgs.filter(i => !(i.complete && i.naturalWidth > 0))
                       .map(i => i.getAttribute('src') || i.currentSrc)));
"""
_FIGURE_TEXT = r"""
const text = (document.querySelector('main') || document.body).textContent;
return (text.match(/<Figure size \d+x\d+ with \d+ Axes>/g) || []).slice(0, 5);
"""
# myst-nb writes a figure's file path as its alt text when the notebook gives none; axe-core accepts that
_ALT_FILE_NAMES = r"""
return Array.from(document.images).filter(i => {
  const alt = (i.getAttribute('alt') || '').trim();
  return alt && (alt === i.getAttribute('src') || /\.(png|jpe?g|gif|svg|webp)$/i.test(alt));
}).map(i => i.getAttribute('src'));
"""
_MATH = r"""
const done = arguments[arguments.length - 1];
const report = () => {
  const math = Array.from(document.querySelectorAll('.math, .amsmath'));
  const raw = math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.trim().slice(0, 80));
  const main = (document.querySelector('main') || document.body).cloneNode(true);
  main.querySelectorAll('pre, code, mjx-container, script, style, .highlight, .output').forEach(e => e.remove());
  const text = main.textContent;
  const loose = [];
  const re = /\\\(|\\\[|\$\$|(?<![\w$\\])\$[^\s$][^$\n]{0,200}?[^\s$\\]\$(?![\w$])/g;
  let m; while ((m = re.exec(text)) && loose.length < 5) loose.push(text.slice(m.index, m.index + 60));
  const scripts = Array.from(document.scripts).map(s => s.src).filter(s => /mathjax/i.test(s));
  done({elements: math.length, rendered: document.querySelectorAll('mjx-container').length, raw: raw,
        loose: loose, scripts: scripts, mathjax: !!window.MathJax});
};
if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
  MathJax.startup.promise.then(report, e => done({error: String(e)}));
} else { report(); }
"""
_AXE = """
const done = arguments[arguments.length - 1];
const path = sel => {  // the element and its ancestors as tag#id.class ..., for the allow-list's `where`
  let e = null; try { e = document.querySelector(sel); } catch (err) {}
  const parts = [];
  for (; e && e.nodeType === 1; e = e.parentElement)
    parts.unshift(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + Array.from(e.classList).map(c => '.' + c).join(''));
  return parts.join(' ');
};
axe.run(document, {resultTypes: ['violations']})
  .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.map(n => ({target: n.target.join(' '), path: path(n.target[n.target.length - 1]),
                                html: n.html.slice(0, 200)}))}))))
  .catch(e => done({error: String(e)}));
"""


@dataclass
class Violation:
    """One axe-core rule that fails on a page, with the elements it fails on."""

    rule: str
    impact: str
    help: str
    targets: list[str]
    allowed_by: Allowed | None = None

    @property
    def blocking(self) -> bool:
        return self.impact in BLOCKING_IMPACTS and self.allowed_by is None

    def __str__(self) -> str:
        more = f" (+{len(self.targets) - 3} more)" if len(self.targets) > 3 else ""
        return f"{self.rule} [{self.impact}] {self.help}: {', '.join(self.targets[:3])}{more}"


@dataclass
class PageReport:
    """What a reader's browser showed on one page."""

    page: str
    console_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    figures_as_text: list[str] = field(default_factory=list)  # matplotlib's "<Figure size ...>" instead of an image
    alt_file_names: list[str] = field(default_factory=list)  # images whose alt text is a file name
    math: dict = field(default_factory=dict)  # elements, rendered, raw, loose, scripts, mathjax
    violations: list[Violation] = field(default_factory=list)  # every impact, allowed ones included
    screenshot: Path | None = None
    seconds: float = 0.0

    @property
    def math_problems(self) -> list[str]:
        """Raw TeX left on the page, MathJax missing where there is math, or MathJax loaded from elsewhere
        than the book's own ``_static``."""
        m, out = self.math, []
        if m.get("error"):
            return [f"MathJax failed: {m['error']}"]
        out += [f"math element left raw: {t!r}" for t in m.get("raw", [])]
        out += [f"raw TeX in the text: {t!r}" for t in m.get("loose", [])]
        if m.get("elements") and not m.get("rendered"):
            out.append(f"{m['elements']} math element(s) but no mjx-container: MathJax did not run")
        out += [f"MathJax loaded from outside the book: {s}" for s in m.get("scripts", [])
                if not s.startswith("file:") or "/_static/" not in s]
        return out

    @property
    def blocking_violations(self) -> list[Violation]:
        return [v for v in self.violations if v.blocking]

    def problems(self) -> list[str]:
        """Everything that fails the page, one line each (empty when the page passes)."""
        return ([f"console: {e}" for e in self.console_errors] + [f"image not loaded: {s}" for s in self.broken_images]
                + [f"a figure shown as text, not drawn: {t} (the kernel's matplotlib backend was not inline)"
                   for t in self.figures_as_text]
                + [f"image without alt text (its alt is the file name; give the figure alt text): {s}"
                   for s in self.alt_file_names]
                + self.math_problems + [f"a11y: {v}" for v in self.blocking_violations]
                + ([] if self.screenshot is None or self.screenshot.is_file() else [f"no screenshot {self.screenshot}"]))


def page_url(html: Path, rel: str, query: str = "") -> str:
    """The ``file://`` URL of a built page (``query`` without the ``?``)."""
    return (Path(html).resolve() / rel).as_uri() + (f"?{query}" if query else "")


def _console_errors(driver) -> list[str]:
    """SEVERE browser-console entries since the last call (reading the log empties it)."""
    return [e.get("message", "") for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def screenshot_full_page(driver, path: Path) -> Path:
    """A PNG of the whole page (not only the window), at most :data:`MAX_SCREENSHOT_HEIGHT` CSS pixels tall."""
    import base64

    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": max(1, int(size["width"])),
            "height": max(1, min(int(size["height"]), MAX_SCREENSHOT_HEIGHT)), "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                             "clip": clip})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def _split_allowed(rel: str, v: dict, allowlist) -> list[Violation]:
    """One axe-core result as :class:`Violation` s: the elements an allow-list entry covers (one per entry)
    and, if any are left, one with the elements none covers."""
    out, left = [], list(v["nodes"])
    for a in allowlist:
        covered = [n for n in left if a.covers(rel, v["id"], n.get("path") or n["target"])]
        if covered:
            out.append(Violation(v["id"], v.get("impact") or "", v["help"], [n["target"] for n in covered], a))
            left = [n for n in left if n not in covered]
    if left or not out:
        out.append(Violation(v["id"], v.get("impact") or "", v["help"], [n["target"] for n in left]))
    return out


def check_page(driver, html: Path, rel: str, *, axe: str | None = None, allowlist: list[Allowed] = (),
               screenshot: Path | None = None) -> PageReport:
    """Open one built page by its ``file://`` URL and report console errors (SEVERE), images that did not load
    (``naturalWidth == 0``), figures printed as text instead of drawn or with their file name as alt text,
    math MathJax left raw, axe-core violations (when ``axe`` is the text of ``axe.min.js``; matched against
    ``allowlist``) and, when ``screenshot`` is a path, a full-page PNG."""
    t = time.perf_counter()
    _console_errors(driver)  # drop what earlier pages logged
    driver.get(page_url(html, rel))
    report = PageReport(rel)
    report.broken_images = driver.execute_async_script(_WAIT_IMAGES)
    report.figures_as_text = driver.execute_script(_FIGURE_TEXT)
    report.alt_file_names = driver.execute_script(_ALT_FILE_NAMES)
    report.math = driver.execute_async_script(_MATH)
    if axe:
        driver.execute_script(axe)
        found = driver.execute_async_script(_AXE)
        if isinstance(found, dict):
            raise RuntimeError(f"axe-core failed on {rel}: {found.get('error')}")
        for v in found:
            report.violations += _split_allowed(rel, v, allowlist)
    if screenshot is not None:
        report.screenshot = screenshot_full_page(driver, screenshot)
    report.console_errors = _console_errors(driver)
    report.seconds = time.perf_counter() - t
    return report


_STOPWORDS = {"about", "their", "there", "these", "those", "which", "would", "where", "other"}


def search_word(html: Path, rel: str) -> str:
    """A word a search should find on page ``rel``: the longest plain word (5+ letters) of its title."""
    text = (Path(html) / rel).read_text(encoding="utf-8", errors="replace")
    m = re.search(r"<h1[^>]*>(.*?)</h1>", text, re.S)
    title = re.sub(r"<[^>]+>", " ", m.group(1) if m else "")
    words = sorted((w for w in re.findall(r"[A-Za-z]{5,}", title) if w.lower() not in _STOPWORDS), key=len,
                   reverse=True)
    if not words:
        raise ValueError(f"{rel} has no <h1> title with a word of 5+ letters to search for")
    return words[0].lower()


@dataclass
class SearchReport:
    """The offline search: the word, the result links it showed, and console errors of the search page."""

    word: str
    results: list[str]
    expected: str
    summaries: int = 0  # result entries showing a text snippet of their page
    console_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def problems(self) -> list[str]:
        out = [f"search console: {e}" for e in self.console_errors]
        if not any(r.split("#")[0].split("?")[0].endswith(self.expected) for r in self.results):
            out.append(f"search for {self.word!r} did not list {self.expected} (results: {self.results[:5]})")
        elif not self.summaries:
            out.append(f"search for {self.word!r} showed no text snippet under its results")
        return out


@contextlib.contextmanager
def serve(html: Path):
    """Serve the HTML folder on ``http://127.0.0.1:<free port>`` from a thread (``with serve(html) as base:``).

    Sphinx's search fetches each result page for its summary, which Chromium refuses for ``file://`` pages
    (CORS): the search is checked as the published site serves it."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # no request log on the terminal
            pass

        def do_GET(self):  # the browser's own /favicon.ico request: the book has none, that is no page error
            if self.path == "/favicon.ico" and not (Path(html) / "favicon.ico").is_file():
                self.send_response(204)
                self.end_headers()
                return
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def check_search(driver, html: Path, *, expected: str, word: str | None = None, timeout: float = 20.0) -> SearchReport:
    """Open ``search.html?q=<word>`` (by default a word of ``expected``'s title, :func:`search_word`) from a
    local server (:func:`serve`; nothing outside this machine) and wait until the result list links to
    ``expected``."""
    t = time.perf_counter()
    word = word or search_word(html, expected)
    _console_errors(driver)
    with serve(html) as base:
        driver.get(f"{base}/search.html?q={word}")
        found, summaries = _wait_results(driver, expected, timeout)
        console = _console_errors(driver)
    return SearchReport(word, found, expected, summaries, console, time.perf_counter() - t)


def _wait_results(driver, expected: str, timeout: float) -> tuple[list[str], int]:
    """``(result links, summaries shown)`` once a link points at ``expected`` and a summary is loaded (or
    ``timeout`` seconds passed)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    links = lambda d: [a.get_attribute("href") or "" for a in  # noqa: E731
                       d.find_elements("css selector", "#search-results ul.search li a, ul.search li a")]
    summaries = lambda d: len(d.find_elements("css selector", "ul.search li p.context"))  # noqa: E731
    done = lambda d: (any(h.split("#")[0].split("?")[0].endswith(expected) for h in links(d))  # noqa: E731
                      and summaries(d) > 0)
    try:
        WebDriverWait(driver, timeout, poll_frequency=0.2).until(done)
    except TimeoutException:
        pass
    return links(driver), summaries(driver)


@dataclass
class BookReport:
    """Everything :func:`check_book` found; :meth:`problems` is empty when the book passes."""

    html: Path
    pages: list[PageReport]
    broken_links: list[Link]
    remote_resources: list[Link]
    external_links: list[Link]
    search: SearchReport | None
    allowlist: list[Allowed]
    seconds: float = 0.0

    def problems(self) -> list[str]:
        out = [f"{p.page}: {x}" for p in self.pages for x in p.problems()]
        out += [f"broken link {l}" for l in self.broken_links] + [f"remote resource {l}" for l in self.remote_resources]
        out += self.search.problems() if self.search else []
        return out

    def allowed(self) -> list[tuple[str, Violation]]:
        """``(page, violation)`` for each serious/critical violation the allow-list accepts."""
        return [(p.page, v) for p in self.pages for v in p.violations
                if v.allowed_by is not None and v.impact in BLOCKING_IMPACTS]

    def format(self) -> str:
        """A plain-text report: one line per page, the allowed violations with their reasons, the problems."""
        lines = [f"checked {len(self.pages)} page(s) of {self.html} in a headless browser in {self.seconds:.1f} s"]
        for p in self.pages:
            m = p.math
            lines.append(f"  {p.page}: {len(p.problems())} problem(s); math {m.get('rendered', 0)} rendered / "
                         f"{m.get('elements', 0)} element(s); axe {len(p.violations)} rule(s) failing "
                         f"({len(p.blocking_violations)} blocking); {p.seconds:.1f} s"
                         + (f"; screenshot {p.screenshot}" if p.screenshot else ""))
        minor = sorted({(v.rule, v.impact) for p in self.pages for v in p.violations if v.impact not in BLOCKING_IMPACTS})
        if minor:
            lines.append("axe violations of impact moderate/minor (reported, not failing): "
                         + ", ".join(f"{r} [{i}]" for r, i in minor))
        allowed = self.allowed()
        if allowed:
            lines.append("serious/critical violations accepted by the allow-list:")
            by_rule: dict = {}
            for page, v in allowed:
                by_rule.setdefault(v.allowed_by, []).append(page)
            lines += [f"  {a} -- on {len(ps)} page(s)" for a, ps in by_rule.items()]
        lines.append(f"links: {len(self.broken_links)} broken, {len(self.remote_resources)} remote resource(s), "
                     f"{len(self.external_links)} external link(s) for readers to follow")
        if self.search:
            lines.append(f"search: {self.search.word!r} -> {len(self.search.results)} result(s) "
                         f"in {self.search.seconds:.1f} s")
        problems = self.problems()
        lines.append(f"{len(problems)} problem(s)" + (":" if problems else ""))
        lines += [f"  {x}" for x in problems]
        return "\n".join(lines)


def screenshot_names(rels: list[str]) -> dict[str, str]:
    """File names for the pages' screenshots: the page's name (``data.png``), or its path with dashes when two
    pages share a name."""
    stems = [Path(r).stem for r in rels]
    return {r: (Path(r).stem if stems.count(Path(r).stem) == 1 else r.removesuffix(".html").replace("/", "-"))
            + ".png" for r in rels}


def check_book(root: Path, *, driver=None, screenshots: bool = True, axe: bool = True, search: bool = True,
               allowlist: Path | None = None, progress: bool = True) -> BookReport:
    """Check every page of a built book (``root``: a book root or its ``_build/html``) in one browser session.

    Links (:func:`broken_links`, :func:`remote_resources`) over every built HTML page; in the browser, for
    every TOC page (:func:`pages`): :func:`check_page` with axe-core and a screenshot in
    ``<root>/_build/screenshots/``; then :func:`check_search` for a word of the first chapter after the root
    page. ``driver``: an open :func:`browser` session to reuse (else one is started and closed here)."""
    from tqdm.auto import tqdm

    t = time.perf_counter()
    html = html_root(root)
    rels = pages(html)
    book_root = html.parent.parent
    allow = load_allowlist(allowlist if allowlist is not None else book_root / ALLOWLIST)
    axe_js = axe_source() if axe else None
    names = screenshot_names(rels)
    shots = html.parent / SCREENSHOTS
    for old in shots.glob("*.png") if screenshots else []:  # pages the book no longer has
        if old.name not in names.values():
            old.unlink()
    with contextlib.nullcontext(driver) if driver is not None else browser() as d:
        reports = [check_page(d, html, rel, axe=axe_js, allowlist=allow,
                              screenshot=shots / names[rel] if screenshots else None)
                   for rel in tqdm(rels, desc="browser check", unit="page", disable=not progress)]
        found = check_search(d, html, expected=rels[1] if len(rels) > 1 else rels[0]) if search else None
    every = html_files(html)
    return BookReport(html, reports, broken_links(html, every), remote_resources(html, every),
                      external_links(html, every), found, allow, time.perf_counter() - t)
