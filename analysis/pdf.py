"""A PDF of the whole book: every built page printed by headless Chromium in TOC order, merged with pypdf.

``python -m analysis book --pdf`` builds the HTML (incrementally), then calls :func:`make_pdf`, which

1. lists the built pages in TOC order (:func:`book_pages`: the root page, then every part's chapters and
   their sections), each with its title (from the page's ``<title>``; a title several pages share gets the
   page's file name, e.g. ``The probe: one reward (probe-clip-mini)``);
2. serves ``<root>/_build/html`` on ``127.0.0.1`` (:func:`analysis.browser.serve`, as the published site is served, so MathJax's fonts and
   the search index load as they do there) and prints each page with the system's headless Chromium
   (Debian ``chromium`` + ``chromium-driver``, driven by Selenium through the browser checks' session,
   :func:`analysis.browser.browser`; :func:`print_pages`) after its math is
   typeset by the book's local MathJax, its images are loaded and its fonts are ready;
3. merges the pages with ``pypdf`` into ``<root>/_build/pdf/book.pdf`` with an outline (bookmarks): one
   entry per TOC part, one per page under it (:func:`merge`).

Nothing is downloaded: the browser and its driver are the system's (installed by ``bash .ci/setup``) and
the pages only load files of the built book.
"""
from __future__ import annotations

import base64
import contextlib
import html as html_lib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from analysis.registry import ROOT

PDF_NAME = Path("_build") / "pdf" / "book.pdf"
# Chromium's DevTools print options: A4 portrait, 1 cm margins, at 80 % (a book's type size), backgrounds
# (figures, admonitions) kept, no browser header/footer (the page's URL and date would change on every build).
PRINT_OPTIONS = {"paperWidth": 8.27, "paperHeight": 11.69, "marginTop": 0.4, "marginBottom": 0.4,
                 "marginLeft": 0.4, "marginRight": 0.4, "printBackground": True, "displayHeaderFooter": False,
                 "preferCSSPageSize": False, "scale": 0.8}
# Added to each page before printing: paper cannot scroll, so code wraps and wide tables shrink and wrap
# instead of being cut at the right margin.
PRINT_CSS = """
@media print {
  pre { white-space: pre-wrap !important; overflow-wrap: anywhere; }
  div.highlight, div.cell_output, div.output, .pst-scrollable-table-container, .table-wrapper,
  .bd-article-container, .bd-content { overflow: visible !important; }
  table { font-size: 0.8em !important; max-width: 100% !important; }
  td, th { overflow-wrap: anywhere; }
  img { max-width: 100% !important; height: auto !important; }
}
"""
# Resolves when the page is ready to print: lazy images made eager and loaded, web fonts ready, and the
# local MathJax's first typeset finished (``MathJax.startup.promise``; pages without math have no MathJax).
# Returns what the page shows: [MathJax present, typeset formulas, raw TeX delimiters left, broken images].
READY_JS = r"""
const done = arguments[arguments.length - 1];
document.querySelectorAll('img[loading="lazy"]').forEach(i => { i.loading = 'eager'; });
const images = Array.from(document.images).filter(i => !i.complete)
  .map(i => new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); }));
const mj = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
Promise.all([mj || Promise.resolve(), document.fonts.ready, ...images]).then(() => {
  const text = document.body.innerText;
  done([!!mj, document.querySelectorAll('mjx-container').length,
        (text.match(/\\\(|\\\)|\\\[|\\\]/g) || []).length,
        Array.from(document.images).filter(i => i.naturalWidth === 0).map(i => i.getAttribute('src'))]);
}, e => done(['error', String(e)]));
"""


class PdfError(RuntimeError):
    """The PDF cannot be made; the message names what is missing and the command that fixes it."""


@dataclass(frozen=True)
class Page:
    """One built page of the book: its TOC file (``book/generated/data``), HTML path, title and TOC part."""

    file: str
    html: Path
    title: str
    part: str | None


@dataclass(frozen=True)
class BookPdf:
    """What :func:`make_pdf` made: the PDF, the pages it holds (in order), its page count and the time taken."""

    path: Path
    pages: list[Page]
    pdf_pages: int
    seconds: float


# ----------------------------------------------------------------------------- the pages
def toc_entries(root: Path = ROOT) -> list[tuple[str, str | None]]:
    """``(file, part caption)`` of every page the TOC of ``root`` lists, in reading order: the root page,
    then each part's chapters and their sections (depth first). Files are as written in ``_toc.yml``."""
    import yaml

    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    out: list[tuple[str, str | None]] = [(toc["root"], None)]

    def walk(entries, part):
        for e in entries or []:
            if "file" in e:
                out.append((e["file"], part))
            walk(e.get("sections"), part)

    for part in toc.get("parts", []):
        walk(part.get("chapters"), part.get("caption"))
    walk(toc.get("chapters"), None)
    return out


def page_title(html_file: Path) -> str:
    """The page's title: its ``<title>`` without the book's title (`` — <book title>``), else the file stem."""
    m = re.search(r"<title>(.*?)</title>", Path(html_file).read_text(errors="replace"), flags=re.S)
    title = html_lib.unescape(m.group(1)).strip() if m else ""
    title = title.rsplit(" \u2014 ", 1)[0].strip()  # "<page> — <book>"
    return title or Path(html_file).stem


def book_pages(root: Path = ROOT) -> list[Page]:
    """The built pages of ``root`` in TOC order (:func:`toc_entries`), titled (:func:`page_title`).

    Raises :class:`PdfError` naming the build command when ``<root>/_build/html`` or a TOC page is missing.
    """
    root = Path(root)
    html = root / "_build" / "html"
    hint = "python -m analysis book" + ("" if root.resolve() == ROOT.resolve() else f" --root {root}")
    if not (html / "index.html").is_file():
        raise PdfError(f"no built HTML in {html}: build the book first: {hint}")
    pages = []
    for file, part in toc_entries(root):
        stem = re.sub(r"\.(md|ipynb|rst)$", "", file)
        path = html / f"{stem}.html"
        if not path.is_file():
            raise PdfError(f"the TOC lists {file} but {path} was not built: build the book first: {hint}")
        pages.append(Page(stem, path, page_title(path), part))
    counts = {}
    for p in pages:
        counts[p.title] = counts.get(p.title, 0) + 1
    return [Page(p.file, p.html, f"{p.title} ({Path(p.file).name})" if counts[p.title] > 1 else p.title, p.part)
            for p in pages]


# ----------------------------------------------------------------------------- the browser
def find_chromium() -> tuple[Path, Path]:
    """``(chromium, chromedriver)`` as :func:`analysis.browser.find_chromium` finds them (Debian's, or
    ``$STUDY_CHROMIUM``/``$STUDY_CHROMEDRIVER``); :class:`PdfError` with the set-up command if missing."""
    from analysis import browser

    try:
        return browser.find_chromium()
    except browser.BrowserUnavailable as e:
        raise PdfError(str(e)) from None


@contextlib.contextmanager
def chromium_session(*, timeout: float = 60.0):
    """The browser checks' headless Chromium session (:func:`analysis.browser.browser`: the system's driver,
    Selenium Manager off, remote hosts unresolvable), an A4-ish window; its errors as :class:`PdfError`."""
    from analysis import browser

    try:
        session = browser.browser(width=1200, height=1600, timeout=timeout)
        driver = session.__enter__()
    except browser.BrowserUnavailable as e:
        raise PdfError(str(e)) from None
    try:
        yield driver
    finally:
        session.__exit__(None, None, None)


def print_page(driver, url: str, *, timeout: float = 60) -> bytes:
    """Load ``url``, wait until it is ready to print (:data:`READY_JS`), return Chromium's PDF of it.

    Raises :class:`PdfError` when MathJax fails or leaves raw TeX, or an image does not load.
    """
    from selenium.common.exceptions import TimeoutException

    driver.set_script_timeout(timeout)
    try:
        driver.get(url)
        state = driver.execute_async_script(READY_JS)
    except TimeoutException:
        raise PdfError(f"{url}: not ready to print after {timeout:.0f} s (the page, MathJax, an image or a font "
                       f"still loading)") from None
    if state and state[0] == "error":
        raise PdfError(f"{url}: MathJax failed to typeset the page: {state[1]}")
    has_mathjax, typeset, raw_tex, broken = state
    if raw_tex and (not has_mathjax or not typeset):
        raise PdfError(f"{url}: {raw_tex} raw TeX delimiter(s) left and no formula typeset "
                       f"({'MathJax did not load' if not has_mathjax else 'MathJax typeset nothing'})")
    if broken:
        raise PdfError(f"{url}: image(s) did not load: {', '.join(map(str, broken[:5]))}")
    driver.execute_script("const s = document.createElement('style'); s.textContent = arguments[0]; "
                          "document.head.appendChild(s);", PRINT_CSS)
    return base64.b64decode(driver.execute_cdp_cmd("Page.printToPDF", dict(PRINT_OPTIONS))["data"])


def print_pages(pages: list[Page], html_root: Path, out_dir: Path, *, progress: bool = True) -> list[Path]:
    """Print every page (one headless Chromium session, the book served from ``html_root``) into
    ``out_dir/<nnn>.pdf``; return the files in the order of ``pages``."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    from analysis.browser import serve

    with chromium_session() as driver, serve(html_root) as base:
        for i, page in enumerate(tqdm(pages, desc="printing pages to PDF", unit="page", disable=not progress)):
            out = out_dir / f"{i:03d}.pdf"
            out.write_bytes(print_page(driver, f"{base}/{page.html.relative_to(html_root).as_posix()}"))
            files.append(out)
    return files


# ----------------------------------------------------------------------------- the merged PDF
def _pypdf():
    """``(PdfReader, PdfWriter)``; :class:`PdfError` naming the set-up command when pypdf is missing."""
    try:
        from pypdf import PdfReader, PdfWriter
    except ImportError:
        raise PdfError("pypdf is not installed: run bash .ci/setup (pyproject.toml pins it)") from None
    return PdfReader, PdfWriter


def merge(files: list[Path], pages: list[Page], dest: Path, *, title: str | None = None) -> int:
    """Concatenate ``files`` (one per page, same order as ``pages``) into ``dest`` with pypdf, with an outline
    entry per page under one per TOC part; returns the number of PDF pages. Written atomically."""
    PdfReader, PdfWriter = _pypdf()
    writer = PdfWriter()
    parts: dict[str, object] = {}
    for file, page in zip(files, pages, strict=True):
        start = len(writer.pages)
        writer.append(PdfReader(file), import_outline=False)
        parent = None
        if page.part:
            if page.part not in parts:
                parts[page.part] = writer.add_outline_item(title=page.part, page_number=start)
            parent = parts[page.part]
        writer.add_outline_item(title=page.title, page_number=start, parent=parent)
    if title:
        writer.add_metadata({"/Title": title})
    writer.page_mode = "/UseOutlines"  # viewers open with the bookmarks shown
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        writer.write(f)
    tmp.replace(dest)
    return len(writer.pages)


def book_title(root: Path = ROOT) -> str | None:
    """The ``title`` of ``<root>/_config.yml``."""
    import yaml

    return (yaml.safe_load((Path(root) / "_config.yml").read_text()) or {}).get("title")


def make_pdf(root: Path = ROOT, dest: Path | None = None, *, progress: bool = True) -> BookPdf:
    """Print the built book of ``root`` (``<root>/_build/html``) page by page in TOC order and merge it into
    ``dest`` (default ``<root>/_build/pdf/book.pdf``). Does not build the HTML: ``python -m analysis book --pdf``
    builds, then calls this. Raises :class:`PdfError` with the fix when the HTML, Chromium or pypdf is missing."""
    import tempfile

    t = time.perf_counter()
    root = Path(root)
    pages = book_pages(root)
    find_chromium()  # before any work: a clear error when the browser or pypdf is missing
    _pypdf()
    dest = Path(dest) if dest is not None else root / PDF_NAME
    with tempfile.TemporaryDirectory(prefix="book-pdf-") as tmp:
        files = print_pages(pages, root / "_build" / "html", Path(tmp), progress=progress)
        n = merge(files, pages, dest, title=book_title(root))
    return BookPdf(dest, pages, n, time.perf_counter() - t)
