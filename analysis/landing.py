"""The findings landing page: every finding of both papers with its computed verdict, effect size, interval and a
link to the page that shows it, read from the result tables the other pages wrote in this run's destination folder.

* **The probe** (Ma et al. 2022): F1–F3 per probed system from ``probe-findings`` (the verdicts recomputed from its
  rows by :func:`analysis.findings.table_verdicts`, exactly as that page
  computes them); the effect shown is the finding's test with the smallest Holm p (its statistic, value and 95%
  interval), and the page link is ``probe-findings``.
* **ReCap** (Paischer et al.) and the bridge: every verdict row of ``realign-findings`` (claim, setting, verdict,
  measure, value, interval), linked to the page that decided it.
* **What rests on a stand-in**: per row, what it rests on (embedded stand-in scorers, embedded data, rule-made
  judgements) and what would change with published weights and real data.

Nothing is typed: a page that has not been run in this build (or was run at another size or seed) is named as
missing; tests check that every number equals the table it came from.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

RUN = "findings"
PROBE_PAGE, REALIGN_PAGE = "probe-findings", "realign-findings"
PAPERS = {"probe": "Ma et al., Findings of EMNLP 2022 (arXiv:2210.09550)",
          "recap": "Paischer et al., ReCap (arXiv:2307.05591)"}


#: the columns of the landing page's rows (:func:`probe_rows`, :func:`recap_rows`)
ROW_COLUMNS = ["paper", "finding", "claim", "system", "family", "verdict", "reason", "test", "baseline", "value", "low",
               "high", "p_holm", "page"]


def read_page(name: str, smoke: bool, seed: int) -> pd.DataFrame | None:
    """The result table of page ``name`` in this run's destination folder (None when missing, or written at another
    size or seed than this run's: a smoke table never stands for a full-size result)."""
    from analysis import results

    base = results.destination_dir() / name
    if not (base.with_suffix(".parquet").exists() or base.with_suffix(".csv").exists()):
        return None
    df = results.read(base)
    if not len(df) or bool(df["smoke"].all()) != bool(smoke):
        return None
    page_seed = _page_seed(base.parent.parent / f"{name}.ipynb")
    # a page's rows may carry per-SCST-seed values in `seed` (and -1 for pooled rows): the page's own seed is its
    # notebook's parameter; without the notebook, the rows must at least include the seed
    same = page_seed == int(seed) if page_seed is not None else int(seed) in set(df["seed"].astype(int))
    return df if same else None


def _page_seed(page) -> int | None:
    """The ``seed`` parameter an executed page ran with (its notebook metadata), None when unknown."""
    import json
    from pathlib import Path

    try:
        meta = json.loads(Path(page).read_text()).get("metadata", {}).get("study", {})
        return int(meta["parameters"]["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def probe_rows(table: pd.DataFrame | None) -> pd.DataFrame:
    """One row per (finding, probed system) of the probe: ``paper, finding, claim, system, family, verdict, reason,
    test, baseline, value, low, high, p_holm, page`` (``test`` the finding's test with the smallest Holm p among those
    that ran). Empty when the probe's findings page was not run."""
    from analysis import findings

    if table is None or "analysis" not in table:
        return pd.DataFrame(columns=ROW_COLUMNS)
    f = table[table["analysis"] == "finding"]
    if f.empty:
        return pd.DataFrame(columns=ROW_COLUMNS)
    f = f[[c for c in findings.COLUMNS if c in f]]
    ver = findings.table_verdicts(f, table[table["analysis"] == "reward raised"])
    out = []
    for _, v in ver.iterrows():
        t = f[(f["finding"] == v["finding"]) & (f["system"].isin([v["system"], "(pooled)"]))
              & (f["status"] == "ok") & f["p_holm"].notna()]
        if "scorer" in t and (t["system"] == "(pooled)").any():  # F3's correlation rows: the system's own scorer
            t = t[(t["system"] != "(pooled)") | (t["scorer"] == v.get("scorer"))]
        best = t.sort_values(["p_holm", "test"]).iloc[0] if len(t) else None
        out.append({"paper": PAPERS["probe"], "finding": v["finding"], "claim": v.get("finding_name", v["finding"]),
                    "system": v["system"], "family": v.get("family", ""), "verdict": v["verdict"],
                    "reason": v["reason"], "test": "" if best is None else best["test"],
                    "baseline": "" if best is None else (best["baseline"] or ""),
                    "value": np.nan if best is None else float(best["value"]),
                    "low": np.nan if best is None else float(best["low"]),
                    "high": np.nan if best is None else float(best["high"]),
                    "p_holm": np.nan if best is None else float(best["p_holm"]), "page": PROBE_PAGE})
    return pd.DataFrame(out, columns=ROW_COLUMNS)


def recap_rows(table: pd.DataFrame | None) -> pd.DataFrame:
    """One row per verdict of the Realignment findings page (ReCap's claims and the bridge): ``paper, finding, claim,
    system, family, verdict, reason, test, baseline, value, low, high, p_holm, page``."""
    if table is None or "claim" not in table:
        return pd.DataFrame(columns=ROW_COLUMNS)
    out = []
    for _, r in table.iterrows():
        bridge = str(r.get("page", "")) == "realign-bridge"
        metric = r.get("metric", "")
        out.append({"paper": "this study (bridge)" if bridge else PAPERS["recap"], "finding": r["claim"],
                    "claim": r["claim"], "system": r.get("setting", "") or "", "family": "", "verdict": r["verdict"],
                    "reason": r["reason"], "test": "" if metric == "verdict" else metric, "baseline": "",
                    "value": float(r["value"]) if "value" in r else np.nan,
                    "low": float(r["low"]) if "low" in r else np.nan,
                    "high": float(r["high"]) if "high" in r else np.nan,
                    "p_holm": float(r["p_holm"]) if "p_holm" in r else np.nan, "page": r["page"]})
    return pd.DataFrame(out, columns=ROW_COLUMNS)


def rests_on(row) -> tuple[str, str]:
    """``(what the row rests on, what would change it)`` for a landing row, from its paper, page and claim.

    >>> rests_on({"paper": PAPERS["probe"], "page": "probe-findings", "claim": "x", "system": "blind"})[0]
    'an SCST captioner trained here against embedded stand-in scorers on the embedded images'
    """
    page, claim = str(row.get("page", "")), str(row.get("claim", "")).lower()
    if page == PROBE_PAGE:
        return ("an SCST captioner trained here against embedded stand-in scorers on the embedded images",
                "published scorers (clip:<arch>/<tag>, vilt:, lxmert:) as rewards and COCO captions: every number")
    if page == "realign-metrics" or "judgement" in claim or "correlat" in claim:
        return ("rule-made judgement sets (never human judgements) scored by clip-mini (CLIP-style stand-in)",
                "Flickr8k-Expert / Flickr8k-CF / THumB human ratings under $STUDY_DATA and a published CLIP")
    if page == "realign-speed":
        return ("wall times on this machine's 2 CPU cores, clip-mini's 256-d embeddings",
                "the ratios' sizes with 512-d CLIP embeddings on COCO and a GPU; the direction is hardware-independent")
    if page == "realign-bridge":
        return ("SCST with clip-mini (CLIP-style stand-in) as the reward, one shared SCST seed",
                "a published CLIP as the reward on COCO, more SCST seeds")
    return ("clip-mini (CLIP-style stand-in) embeddings of the embedded images and captions",
            "a published CLIP (clip:ViT-B-32/openai) with COCO / Flickr pairs")


def landing_table(probe: pd.DataFrame | None, realign: pd.DataFrame | None) -> pd.DataFrame:
    """Every landing row (:func:`probe_rows` then :func:`recap_rows`) with ``rests_on`` and ``would_change``."""
    rows = pd.concat([probe_rows(probe), recap_rows(realign)], ignore_index=True)
    if rows.empty:
        return rows.assign(rests_on=pd.Series(dtype=str), would_change=pd.Series(dtype=str))
    pairs = [rests_on(r) for _, r in rows.iterrows()]
    return rows.assign(rests_on=[p[0] for p in pairs], would_change=[p[1] for p in pairs])


def stand_ins() -> pd.DataFrame:
    """The embedded stand-ins of the scorer registry with their labels (the "what is a stand-in" box)."""
    from analysis.registry import SCORERS

    out = []
    for e in SCORERS._entries.values():
        if e.meta.get("source") == "embedded":
            out.append({"name": e.name, "what": e.summary, "family": e.meta.get("family", ""),
                        "trained on the perturbation kinds it is tested on": bool(e.meta.get("trained_on_perturbations"))})
    return pd.DataFrame(out)


def missing_pages(probe, realign) -> list[str]:
    """The findings pages whose tables this run could not read."""
    return [p for p, t in ((PROBE_PAGE, probe), (REALIGN_PAGE, realign)) if t is None]


def run_landing(*, smoke: bool = False, seed: int = 0):
    """The landing page: :func:`landing_table` of this run's probe and Realignment findings tables, the stand-ins,
    and the sentences (:func:`analysis.prose.landing_sentences`)."""
    from analysis import prose, results
    from analysis.probe import Page

    probe, realign = read_page(PROBE_PAGE, smoke, seed), read_page(REALIGN_PAGE, smoke, seed)
    table = landing_table(probe, realign)
    missing = missing_pages(probe, realign)
    recs = table.assign(metric=[t or "verdict" for t in table["test"]]).drop(columns=["test"]).to_dict("records")
    recs += [{"finding": "(page not run)", "verdict": "not run in this build", "page": p, "metric": "verdict",
              "value": np.nan} for p in missing]  # a missing page is a row too, never silence
    rows = results.rows(recs, run=RUN, model="see the linked page", source="embedded", pretrained="",
                        dataset="the book's result tables", split="test", seed=int(seed), smoke=bool(smoke))
    return Page(rows, tables={"landing": table, "stand_ins": stand_ins()},
                frames={"missing": missing}, sentences=prose.landing_sentences(table, missing))


def html_table(table: pd.DataFrame, which: str) -> str:
    """The landing rows of ``which`` (``"probe-findings"``: the probe's; ``"other"``: ReCap's and the bridge's) as an
    HTML table: finding, system / setting, verdict, effect [95% interval] (:func:`analysis.prose.landing_effect`) and
    a link to the page that shows it (``<page>.html``, a sibling of this page). Text is HTML-escaped."""
    import html

    from analysis.prose import landing_effect

    rows = table[table["page"] == PROBE_PAGE] if which == PROBE_PAGE else table[table["page"] != PROBE_PAGE]
    if rows.empty:
        return "<p>No verdict: the page that computes these has not been run in this build.</p>"
    head = "<tr><th>finding</th><th>system / setting</th><th>verdict</th><th>effect [95% interval]</th><th>page</th></tr>"
    body = []
    for _, r in rows.iterrows():
        cells = [r["finding"] if which == PROBE_PAGE else r["claim"], r["system"], r["verdict"], landing_effect(r)]
        link = f'<a href="{html.escape(str(r["page"]))}.html">{html.escape(str(r["page"]))}</a>'
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + f"<td>{link}</td></tr>")
    return f'<table class="table"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
