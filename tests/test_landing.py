"""The findings landing page (analysis.landing): every number equals the result table it came from, missing pages
are named, the HTML table escapes text and links each row to its page. Constructed tables; no model runs."""
import numpy as np
import pandas as pd
import pytest

from analysis import findings, landing, prose


def finding_row(finding, test, component, system, value, low, high, p_holm, supports, **kw):
    base = {"analysis": "finding", "finding": finding, "test": test, "component": component, "measure": "m",
            "statistic": "mean", "system": system, "family": "dual encoder", "scorer": "clip-mini",
            "baseline": "xe", "value": value, "low": low, "high": high, "null": 0.0, "p": p_holm,
            "p_holm": p_holm, "test_family": f"{finding} {system}", "n": 60, "n_images": 60, "seeds": 3,
            "seeds_baseline": 1, "direction_expected": "<", "supports": supports, "status": "ok", "note": "",
            "interval": "bootstrap", "confidence": 0.95, "seed": 0, "smoke": False}
    return {**base, **kw}


def probe_table(raised=True):
    rows = [finding_row("F2", "template entropy lower", "patterns", "clip-mini", -0.8, -1.2, -0.4, 0.002, True),
            finding_row("F2", "SLOR lower", "fluency", "clip-mini", -0.1, -0.3, 0.1, 0.4, False),
            finding_row("F2", "grammar errors more frequent", "grammar", "clip-mini", 0.2, 0.1, 0.3, 0.01, True,
                        direction_expected=">"),
            {"analysis": "reward raised", "system": "clip-mini", "measure": "score:clip-mini", "baseline": "xe",
             "value": 0.03 if raised else -0.01, "low": 0.01 if raised else -0.02, "high": 0.05, "raised": raised,
             "status": "ok", "seed": 0, "smoke": False}]
    return pd.DataFrame(rows)


def realign_table():
    return pd.DataFrame([
        {"analysis": "verdict", "claim": "Procrustes closes the modality gap", "source_of_claim": "ReCap §3",
         "setting": "in-domain", "verdict": "holds", "metric": "centroid distance change", "value": -0.02,
         "low": -0.03, "high": -0.01, "p_holm": 0.001, "reason": "r", "page": "realign-method"},
        {"analysis": "verdict", "claim": "trained 1000× faster", "source_of_claim": "ReCap abstract",
         "setting": "all", "verdict": "inconclusive", "metric": "verdict", "value": np.nan, "low": np.nan,
         "high": np.nan, "p_holm": np.nan, "reason": "budget", "page": "realign-speed"},
        {"analysis": "verdict", "claim": "Realigning changes what SCST learns", "source_of_claim": "this study",
         "setting": "aclip vs clip", "verdict": "does not hold here", "metric": "significant differences",
         "value": 0.0, "low": np.nan, "high": np.nan, "p_holm": np.nan, "reason": "none", "page": "realign-bridge"}])


def test_probe_rows_take_the_verdict_and_the_smallest_holm_p_test_from_the_table():
    t = probe_table()
    got = landing.probe_rows(t)
    want = findings.with_reward_check(findings.verdicts(t[t.analysis == "finding"][[c for c in findings.COLUMNS]]),
                                      t[t.analysis == "reward raised"])
    assert got["verdict"].tolist() == want["verdict"].tolist()
    r = got.iloc[0]
    assert (r["test"], r["value"], r["low"], r["high"], r["p_holm"]) == ("template entropy lower", -0.8, -1.2, -0.4,
                                                                         0.002)
    assert r["page"] == "probe-findings" and r["baseline"] == "xe" and "Ma et al." in r["paper"]
    flat = landing.probe_rows(probe_table(raised=False))
    assert flat["verdict"].tolist() == ["not testable here"]


def test_recap_rows_copy_every_verdict_row():
    t = realign_table()
    got = landing.recap_rows(t)
    assert got["claim"].tolist() == t["claim"].tolist() and got["verdict"].tolist() == t["verdict"].tolist()
    np.testing.assert_array_equal(got["value"].to_numpy(float), t["value"].to_numpy(float))
    assert got["page"].tolist() == t["page"].tolist()
    assert got.loc[2, "paper"] == "this study (bridge)" and "ReCap" in got.loc[0, "paper"]
    assert got.loc[1, "test"] == ""  # a verdict decided without a measure shows no effect


def test_landing_table_says_what_each_row_rests_on():
    table = landing.landing_table(probe_table(), realign_table())
    assert len(table) == 4 and table["rests_on"].str.len().min() > 0 and table["would_change"].str.len().min() > 0
    assert "stand-in" in table.loc[0, "rests_on"]
    assert "wall times" in table.loc[table.page == "realign-speed", "rests_on"].iloc[0]


def test_missing_pages_are_named_and_no_number_is_made_up():
    table = landing.landing_table(None, realign_table())
    assert set(table["page"]) == {"realign-method", "realign-speed", "realign-bridge"}
    s = prose.landing_sentences(table, landing.missing_pages(None, realign_table()))
    assert s[-1].startswith("Not run in this build: probe-findings")
    assert not any("The probe's" in x for x in s)
    empty = prose.landing_sentences(landing.landing_table(None, None), ["probe-findings", "realign-findings"])
    assert empty[0].startswith("No finding was computed")
    assert "neither findings page" in empty[0] and "probe-findings, realign-findings" in empty[-1]


def test_sentences_list_each_systems_verdict():
    table = landing.landing_table(probe_table(), realign_table())
    s = prose.landing_sentences(table, [])
    assert s[0].startswith("The probe's F2 (") and "`clip-mini` **" in s[0]
    assert any(x.startswith("“trained 1000× faster” (Paischer et al.") and "**inconclusive** (all)" in x for x in s)


def test_html_table_escapes_and_links_each_row():
    t = realign_table()
    t.loc[0, "claim"] = "a <b>bold</b> claim"
    table = landing.landing_table(probe_table(), t)
    h = landing.html_table(table, "other")
    assert "&lt;b&gt;bold&lt;/b&gt;" in h and '<a href="realign-method.html">' in h
    assert h.count("<tr>") == 1 + 3  # header + the three Realignment rows
    p = landing.html_table(table, "probe-findings")
    assert "−0.80" in p or "-0.80" in p
    assert '<a href="probe-findings.html">' in p
    assert "has not been run" in landing.html_table(landing.landing_table(None, None), "probe-findings")


def test_read_page_takes_the_pages_seed_from_its_notebook(tmp_path, monkeypatch):
    """A findings table whose rows carry per-SCST-seed values (0, 1, 2 and −1 for pooled rows) is read for the page
    seed its notebook ran with; another seed, another size or a missing table is None."""
    import json

    from analysis import results

    gen = tmp_path / "book" / "generated"
    monkeypatch.setenv("STUDY_RESULTS_DEST", str(gen / "results"))
    t = probe_table().assign(seed=[0, 1, 2, -1], run="probe", model="m", source="embedded", pretrained="",
                             dataset="d", split="test", metric="m")
    results.write(t, gen / "results" / "probe-findings")
    assert landing.read_page("probe-findings", False, 0) is not None  # no notebook: the rows include seed 0
    assert landing.read_page("probe-findings", False, 5) is None
    (gen / "probe-findings.ipynb").write_text(json.dumps({"metadata": {"study": {"parameters": {"seed": 2}}}}))
    assert landing.read_page("probe-findings", False, 2) is not None
    assert landing.read_page("probe-findings", False, 0) is None
    assert landing.read_page("probe-findings", True, 2) is None
    assert landing.read_page("realign-findings", False, 2) is None
