"""The book's PDF (analysis.pdf): the smoke book printed page by page in TOC order by headless Chromium,
merged with a bookmark per page; its first pages rendered to PNG with pdftoppm are not blank and its math
is typeset. Missing HTML or a missing browser fail with the command that fixes them."""
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from analysis import pdf

FIRST_PAGES = 3


@pytest.fixture(scope="module")
def book_pdf(smoke_book, tmp_path_factory):
    """``(BookPdf, root)``: the session's smoke book printed to a PDF outside the book root."""
    root, proc = smoke_book
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    made = pdf.make_pdf(root, tmp_path_factory.mktemp("pdf") / "book.pdf", progress=False)
    return made, root


def outline_titles(outline) -> list[str]:
    """Every title of a pypdf outline (nested lists flattened), in order."""
    out = []
    for item in outline:
        out += outline_titles(item) if isinstance(item, list) else [item.title]
    return out


def test_every_toc_page_is_in_the_pdf_in_order(book_pdf):
    from pypdf import PdfReader

    made, root = book_pdf
    files = [f for f, _ in pdf.toc_entries(root)]
    assert [p.file for p in made.pages] == [f.removesuffix(".md").removesuffix(".ipynb") for f in files]
    reader = PdfReader(made.path)
    assert len(reader.pages) == made.pdf_pages >= len(files)
    titles = outline_titles(reader.outline)
    assert all(p.title in titles for p in made.pages), (titles, [p.title for p in made.pages])
    assert len({p.title for p in made.pages}) == len(made.pages)  # shared titles are told apart
    starts = [reader.get_destination_page_number(o) for o in _page_items(reader.outline)]
    assert starts[0] == 0 and all(a < b for a, b in zip(starts, starts[1:]))  # TOC order, each page a page


def _page_items(outline) -> list:
    """The outline's per-page entries (children of a part, or top-level entries without children)."""
    out = []
    for i, item in enumerate(outline):
        if isinstance(item, list):
            out += item
        elif not (i + 1 < len(outline) and isinstance(outline[i + 1], list)):
            out.append(item)
    return out


def test_math_is_typeset_in_the_pdf(book_pdf):
    """The first page with TeX (the introduction's Procrustes formula) is MathJax output in the PDF, not raw TeX."""
    from pypdf import PdfReader

    made, _ = book_pdf
    reader = PdfReader(made.path)
    starts = [reader.get_destination_page_number(o) for o in _page_items(reader.outline)] + [len(reader.pages)]
    i = next(i for i, p in enumerate(made.pages) if "\\(" in p.html.read_text())  # the page has TeX ...
    text = "".join(reader.pages[j].extract_text() for j in range(starts[i], min(starts[i + 1], starts[i] + 3)))
    assert len(text.split()) > 50  # ... the PDF has the page's text ...
    assert "\\(" not in text and "\\)" not in text and "\\arg" not in text  # ... and no raw TeX


def test_first_pages_render_to_non_blank_png(book_pdf, tmp_path):
    exe = shutil.which("pdftoppm")
    assert exe, "pdftoppm not found: run bash .ci/setup (it installs Debian's poppler-utils)"
    made, _ = book_pdf
    subprocess.run([exe, "-png", "-r", "40", "-f", "1", "-l", str(FIRST_PAGES), str(made.path),
                    str(tmp_path / "page")], check=True, timeout=120)
    pngs = sorted(tmp_path.glob("page-*.png"))
    assert len(pngs) == FIRST_PAGES
    for png in pngs:
        gray = np.asarray(Image.open(png).convert("L"), dtype=float)
        assert gray.var() > 50, f"{png.name} looks blank (pixel variance {gray.var():.1f})"
        assert (gray < 128).mean() > 0.002, f"{png.name} has almost no dark pixels (no text)"


def tiny_book(root, titles=("Intro", "One reward", "One reward"), *, built=True):
    """A book root with a root page and two chapters in one part; with ``built``, their HTML too."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "_config.yml").write_text("title: Tiny\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nparts:\n  - caption: Part A\n    chapters:\n"
                                   "      - file: book/generated/a\n        sections:\n"
                                   "          - file: book/generated/b\n")
    if built:
        html = root / "_build" / "html"
        for rel, title in zip(("book/intro", "book/generated/a", "book/generated/b"), titles):
            (html / rel).parent.mkdir(parents=True, exist_ok=True)
            (html / f"{rel}.html").write_text(f"<html><head><title>{title} &#8212; Tiny</title></head>"
                                              f"<body><h1>{title}</h1></body></html>")
        (html / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    return root


def test_pages_in_toc_order_with_distinct_titles(tmp_path):
    pages = pdf.book_pages(tiny_book(tmp_path / "b"))
    assert [p.file for p in pages] == ["book/intro", "book/generated/a", "book/generated/b"]
    assert [p.title for p in pages] == ["Intro", "One reward (a)", "One reward (b)"]
    assert [p.part for p in pages] == [None, "Part A", "Part A"]


def test_merge_keeps_order_and_writes_an_outline(tmp_path):
    from pypdf import PdfReader, PdfWriter

    pages = pdf.book_pages(tiny_book(tmp_path / "b"))
    files = []
    for i, n in enumerate((1, 2, 1)):  # page i has n PDF pages of width 100 + i
        w = PdfWriter()
        for _ in range(n):
            w.add_blank_page(100 + i, 200)
        files.append(tmp_path / f"{i}.pdf")
        w.write(files[-1])
    dest = tmp_path / "out" / "book.pdf"
    assert pdf.merge(files, pages, dest, title="Tiny") == 4
    reader = PdfReader(dest)
    assert [float(p.mediabox.width) for p in reader.pages] == [100, 101, 101, 102]
    assert outline_titles(reader.outline) == ["Intro", "Part A", "One reward (a)", "One reward (b)"]
    assert [reader.get_destination_page_number(o) for o in _page_items(reader.outline)] == [0, 1, 3]
    assert reader.metadata.title == "Tiny"


def test_no_built_html_says_build_first(tmp_path):
    root = tiny_book(tmp_path / "b", built=False)
    with pytest.raises(pdf.PdfError, match=r"build the book first: python -m analysis book --root"):
        pdf.make_pdf(root)


def test_missing_chromium_says_run_setup(monkeypatch, tmp_path):
    """A built book but no browser: the error names chromium and the set-up command, and nothing is written."""
    root = tiny_book(tmp_path / "b")
    monkeypatch.setenv("STUDY_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(pdf.PdfError, match=r"chromium not found .*run bash \.ci/setup"):
        pdf.make_pdf(root, tmp_path / "book.pdf", progress=False)
    assert not (tmp_path / "book.pdf").exists()


def test_math_left_raw_is_refused(tmp_path):
    """A page whose TeX no MathJax typesets (here: its script is missing) stops the PDF, naming the page."""
    root = tiny_book(tmp_path / "b")
    page = root / "_build" / "html" / "book" / "generated" / "a.html"
    page.write_text('<html><head><title>A &#8212; Tiny</title><script defer src="../../_static/mathjax/'
                    'tex-chtml.js"></script></head><body><p>An angle <span class="math">\\(x^2\\)</span>.</p>'
                    '</body></html>')
    with pytest.raises(pdf.PdfError, match=r"generated/a\.html: 2 raw TeX delimiter\(s\) left .*MathJax did not load"):
        pdf.make_pdf(root, tmp_path / "book.pdf", progress=False)


def test_cli_book_pdf_reports_missing_html(tmp_path, capsys):
    """``book --pdf`` stops with the PDF's error (exit 1) when there is no HTML to print."""
    from analysis.__main__ import _book_pdf

    assert _book_pdf(tiny_book(tmp_path / "b", built=False)) == 1
    assert "build the book first" in capsys.readouterr().err
