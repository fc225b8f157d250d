"""The built smoke book opened in Debian's headless Chromium: every page, as a reader meets it.

One browser session (module fixture ``driver``) checks every page of the session's smoke book (fixture
``smoke_book``): console errors, images, math, axe-core, screenshots; then the offline search. The link checker
and the allow-list are pure Python and are also tested on tiny hand-made pages, and the browser checks are
shown to catch a broken page (so a pass means something).

Chromium is a system tool that ``.ci/setup`` installs: when it is missing these tests fail with the fix
("run bash .ci/setup"), they do not skip.
"""
import struct

import pytest

from analysis import browser


@pytest.fixture(scope="module")
def driver():
    with browser.browser() as d:  # BrowserUnavailable names the fix when chromium is missing
        yield d


@pytest.fixture(scope="module")
def book(smoke_book, driver):
    """``(html folder, BookReport)`` of the whole smoke book, checked once."""
    root, proc = smoke_book
    assert proc.returncode == 0, "the smoke book did not build:\n" + proc.stdout[-2000:] + proc.stderr[-2000:]
    report = browser.check_book(root, driver=driver, progress=False)
    print("\n" + report.format())  # the allow-list and timings show in `pytest -s` and in failures
    return browser.html_root(root), report


def write(folder, rel, body, head=""):
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<!doctype html><html lang='en'><head><title>t</title>{head}</head><body>{body}</body></html>")
    return path


# ----------------------------------------------------------------------------- the smoke book
def test_every_toc_page_was_opened_in_the_browser(book, smoke_book):
    html, report = book
    import yaml

    toc = yaml.safe_load((smoke_book[0] / "_toc.yml").read_text())
    expected = [toc["root"] + ".html"] + [c["file"] + ".html" for p in toc["parts"] for c in p["chapters"]]
    assert [p.page for p in report.pages] == expected == browser.pages(html)


def test_no_page_logs_a_console_error(book):
    _, report = book
    assert {p.page: p.console_errors for p in report.pages if p.console_errors} == {}


def test_every_figure_is_drawn_loaded_and_described(book):
    _, report = book
    assert {p.page: p.broken_images for p in report.pages if p.broken_images} == {}
    assert {p.page: p.figures_as_text for p in report.pages if p.figures_as_text} == {}
    assert {p.page: p.alt_file_names for p in report.pages if p.alt_file_names} == {}
    html, _ = book
    shown = sum(b"<img" in (html / p.page).read_bytes() for p in report.pages)
    assert shown >= 3, "the smoke book should show figures on several pages"


def test_math_is_rendered_by_the_local_mathjax(book):
    _, report = book
    assert {p.page: p.math_problems for p in report.pages if p.math_problems} == {}
    with_math = [p for p in report.pages if p.math.get("elements")]
    assert with_math, "no page has math: the check would be empty"
    for p in with_math:
        assert p.math["rendered"] >= p.math["elements"] and p.math["mathjax"], p.page
        assert p.math["scripts"] and all(s.startswith("file:") for s in p.math["scripts"]), p.math["scripts"]


def test_every_internal_link_and_anchor_resolves_and_nothing_loads_from_the_network(book):
    html, report = book
    assert [str(l) for l in report.broken_links] == []
    assert [str(l) for l in report.remote_resources] == []
    links = list(browser._links(html))
    assert sum("#" in url for _, _, _, url, _ in links) > 20, "anchors were checked"


def test_no_serious_or_critical_accessibility_violation_outside_the_allow_list(book):
    _, report = book
    blocking = {p.page: [str(v) for v in p.blocking_violations] for p in report.pages if p.blocking_violations}
    for a in report.allowlist:  # printed: each accepted rule with its reason
        print(f"allowed: {a}")
    assert blocking == {}
    assert all(p.violations is not None for p in report.pages)


def test_search_works_offline(book):
    _, report = book
    s = report.search
    assert s is not None and s.problems() == [], s and s.problems()
    assert len(s.word) >= 5 and s.results


def test_a_full_page_screenshot_of_every_page(book):
    html, report = book
    for p in report.pages:
        assert p.screenshot == html.parent / "screenshots" / browser.screenshot_names([x.page for x in report.pages])[p.page]
        data = p.screenshot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert width >= 800 and height >= 600, (p.page, width, height)


def test_the_whole_check_passes_and_says_so(book):
    _, report = book
    assert report.problems() == [], report.format()
    assert "0 problem(s)" in report.format()


# ----------------------------------------------------------------------------- the checks catch what they should
def test_the_browser_checks_catch_a_broken_page(tmp_path, driver):
    write(tmp_path, "bad.html", "<main><h1>Broken</h1><img src='missing.png'><img src='gone.png' alt='x'>"
                                "<img src='chart.png' alt='../_images/chart.png'><p>&lt;Figure size 640x480 with 1 "
                                "Axes&gt;</p><p>left raw: $x^2$ and \\(y\\)</p><script>undefinedFunction()</script></main>")
    report = browser.check_page(driver, tmp_path, "bad.html", axe=browser.axe_source(),
                                screenshot=tmp_path / "shots" / "bad.png")
    assert sorted(report.broken_images) == ["chart.png", "gone.png", "missing.png"]
    assert report.figures_as_text == ["<Figure size 640x480 with 1 Axes>"] and report.alt_file_names == ["chart.png"]
    assert any("undefinedFunction" in e for e in report.console_errors)
    assert any("missing.png" in e for e in report.console_errors)
    assert any("$x^2$" in m for m in report.math_problems) and any("\\(y" in m for m in report.math_problems)
    assert "image-alt" in {v.rule for v in report.blocking_violations}  # <img> without alt: critical
    assert report.screenshot.is_file()


def test_a_remote_script_is_a_console_error_offline(tmp_path, driver):
    write(tmp_path, "remote.html", "<main><h1>Remote</h1></main>",
          head="<script src='https://cdn.example.org/lib.js'></script>")
    report = browser.check_page(driver, tmp_path, "remote.html")
    assert any("cdn.example.org" in e for e in report.console_errors)
    assert [l.url for l in browser.remote_resources(tmp_path, ["remote.html"])] == ["https://cdn.example.org/lib.js"]


def test_the_allow_list_accepts_only_the_named_rule_pages_and_elements(tmp_path, driver):
    write(tmp_path, "a.html", "<main><h1>Alt</h1><img src='x.png'><div class='theme'><img src='y.png'></div></main>")
    (tmp_path / "x.png").write_bytes(b"")
    allow = [browser.Allowed("image-alt", "the theme's decorative icon", pages="a.html", where=".theme")]
    report = browser.check_page(driver, tmp_path, "a.html", axe=browser.axe_source(), allowlist=allow)
    alt = [v for v in report.violations if v.rule == "image-alt"]
    assert [(v.allowed_by is not None, v.targets) for v in alt] == [(True, ['img[src="y.png"]']),
                                                                   (False, ['img[src="x.png"]'])]
    other_page = browser.check_page(driver, tmp_path, "a.html", axe=browser.axe_source(),
                                    allowlist=[browser.Allowed("image-alt", "why", pages="b.html")])
    assert all(v.blocking for v in other_page.violations if v.rule == "image-alt")


# ----------------------------------------------------------------------------- pure Python: links, allow-list
def test_broken_links_finds_missing_files_and_anchors_and_ignores_query_strings(tmp_path):
    write(tmp_path, "searchindex.js", "")
    write(tmp_path, "book/a.html", "<h1 id='top'>A</h1><a name='old'></a>"
                                   "<a href='b.html#there'>ok</a><a href='b.html#nowhere'>bad anchor</a>"
                                   "<a href='#top'>ok</a><a href='#old'>ok</a><a href='#gone'>bad</a>"
                                   "<a href='c.html'>bad file</a><a href='../_static/s.css?v=1'>ok</a>"
                                   "<a href='sub/'>folder</a><a href='b%20c.html'>quoted</a>"
                                   "<img src='data:image/png;base64,AAAA'><a href='../../outside.html'>out</a>"
                                   "<a href='https://example.org/x#y'>external</a><a href='mailto:a@b.c'>m</a>",
          head="<link rel='stylesheet' href='https://cdn.example.org/x.css'>"
               "<script src='//cdn.example.org/x.js'></script><link rel='next' href='https://example.org/n'>")
    write(tmp_path, "book/b.html", "<section id='there'></section>")
    write(tmp_path, "book/b c.html", "")
    write(tmp_path, "book/sub/index.html", "")
    write(tmp_path, "_static/s.css", "")
    problems = {(l.url, l.problem.split(" ")[0]) for l in browser.broken_links(tmp_path, ["book/a.html"])}
    assert problems == {("b.html#nowhere", "no"), ("#gone", "no"), ("c.html", "no"), ("../../outside.html", "points")}
    ext = browser.external_links(tmp_path, ["book/a.html"])
    assert {(l.url, l.resource) for l in ext} == {
        ("https://cdn.example.org/x.css", True), ("//cdn.example.org/x.js", True),
        ("https://example.org/n", False), ("https://example.org/x#y", False), ("mailto:a@b.c", False)}
    assert len(browser.remote_resources(tmp_path, ["book/a.html"])) == 2


def test_pages_follow_the_toc_and_name_missing_pages(tmp_path):
    html = tmp_path / "_build" / "html"
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nparts:\n  - caption: P\n    chapters:\n"
                                       "      - file: book/generated/b\n        sections:\n"
                                       "          - file: book/generated/c\n      - file: book/generated/a\n")
    for rel in ("book/intro.html", "book/generated/b.html", "book/generated/c.html", "searchindex.js"):
        write(html, rel, "")
    with pytest.raises(FileNotFoundError, match="book/generated/a.html"):
        browser.pages(html)
    write(html, "book/generated/a.html", "")
    assert browser.pages(html) == ["book/intro.html", "book/generated/b.html", "book/generated/c.html",
                                   "book/generated/a.html"]
    assert browser.html_root(tmp_path) == html and browser.html_root(html) == html
    with pytest.raises(FileNotFoundError, match="python -m analysis book"):
        browser.html_root(tmp_path / "elsewhere")


def test_the_allow_list_file_needs_a_reason_for_each_entry(tmp_path):
    path = tmp_path / "allow.yml"
    assert browser.load_allowlist(path) == []
    path.write_text("- rule: color-contrast\n  pages: 'book/*'\n  where: .bd-sidebar\n  why: >-\n    the theme's\n"
                    "    sidebar grey\n")
    (a,) = browser.load_allowlist(path)
    assert (a.rule, a.pages, a.where, a.why) == ("color-contrast", "book/*", ".bd-sidebar", "the theme's sidebar grey")
    assert a.covers("book/x.html", "color-contrast", "html body div.bd-sidebar.x a")
    assert not a.covers("x.html", "color-contrast", "html body div.bd-sidebar a")  # another page
    assert not a.covers("book/x.html", "color-contrast", "html body main a")  # another place
    path.write_text("- rule: color-contrast\n")
    with pytest.raises(ValueError, match="why"):
        browser.load_allowlist(path)


def test_the_project_allow_list_is_valid():
    from analysis.registry import ROOT

    for a in browser.load_allowlist(ROOT / browser.ALLOWLIST):
        assert len(a.why) > 20 and "\n" not in a.why, a


def test_a_missing_chromium_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv(browser.BROWSER_ENV, str(tmp_path / "no-chromium"))
    with pytest.raises(browser.BrowserUnavailable, match=r"run bash \.ci/setup"):
        browser.find_chromium()


def test_the_sphinx_hook_writes_each_inline_script_once():
    """Sphinx 7.4 lists a late inline script twice (file name '' and None): a `const` declared twice is a
    SyntaxError in the reader's console; analysis.sphinx_html keeps the first copy."""
    from sphinx.builders.html._assets import _JavaScript

    from analysis import sphinx_html

    thebe = 'const THEBE_JS_URL = "x"'
    context = {"script_files": [_JavaScript("_static/a.js"), _JavaScript("", body=thebe), _JavaScript(None, body=thebe),
                                _JavaScript(None, body="var other = 1"), _JavaScript("_static/a.js")]}
    sphinx_html.dedupe_scripts(None, "page", "page.html", context, None)
    assert [(s.filename, s.attributes.get("body")) for s in context["script_files"]] == [
        ("_static/a.js", None), ("", thebe), (None, "var other = 1")]
