"""The book's computed sentences: functions from result rows to English, one pattern for every chapter.

Each function takes the tidy rows an experiment returned and gives a list of sentences (plain
Markdown); :func:`bullets` joins them. Nothing here holds a number or a dataset name of its own:
every value, label and verdict comes from the rows, and a missing baseline or an empty analysis
gives a sentence that says so instead of a comparison with NaN. Verdicts use Holm-adjusted p-values
(``p_holm``) at :data:`ALPHA`.

Pattern for a new chapter: write ``xxx_sentences(rows) -> list[str]`` functions here, unit-test them on
constructed rows (including the rows missing a baseline), and call ``bullets(...)`` from the notebook.
"""
from __future__ import annotations

import math

import pandas as pd

ALPHA = 0.05


def bullets(*groups: list[str]) -> str:
    """Markdown bullet list of every sentence in ``groups``, in order."""
    return "\n".join(f"* {s}" for g in groups for s in g)


def fmt_p(p: float) -> str:
    """``p = 0.003``, ``p < 0.001``, or ``p n/a``."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def fmt_ci(row) -> str:
    """``0.42 [0.30, 0.55]`` from a row with ``value``, ``ci_low``, ``ci_high``."""
    return f"{row['value']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def fmt_num(x: float) -> str:
    """``727`` for magnitudes of 100 or more, else two decimals: ``0.64``."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.2f}"


def fmt_interval(value: float, low: float, high: float) -> str:
    """``0.64 [0.52, 0.75]`` (:func:`fmt_num` each), or the value alone when a bound is missing (NaN)."""
    if low == low and high == high:
        return f"{fmt_num(value)} [{fmt_num(low)}, {fmt_num(high)}]"
    return fmt_num(value)


def names_list(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = [f"`{i}`" for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


ZERO_SHOT = {"yes": "(trained on these perturbation kinds: not zero-shot)",
             "no": "(zero-shot: never trained on a rule-made perturbation)",
             "unknown": "(training data unknown: zero-shot not guaranteed)"}


def training_of(g: pd.DataFrame) -> str:
    """``yes`` / ``no`` / ``unknown`` from the rows' ``trained_on_perturbations`` column (unknown if absent)."""
    if "trained_on_perturbations" not in g or g["trained_on_perturbations"].isna().all():
        return "unknown"
    return str(g["trained_on_perturbations"].dropna().iloc[0])


def significant(row, alpha: float = ALPHA) -> bool:
    p = row.get("p_holm", float("nan"))
    return p == p and p <= alpha


# ----------------------------------------------------------------------------- the scorers chapter
def correction_sentence(rows: pd.DataFrame) -> list[str]:
    """How many tests each Holm family holds."""
    t = rows.dropna(subset=["p"]) if "p" in rows else rows.iloc[0:0]
    if t.empty:
        return ["No statistical test was run."]
    counts = t.groupby("test_family", sort=False).size()
    fams = ", ".join(f"*{f}* ({n} test{'s' if n != 1 else ''})" for f, n in counts.items())
    return [f"p-values are exact (binomial, sign and McNemar tests), Holm-corrected within each family of tests: {fams}; "
            f"a verdict below holds at α = {ALPHA} after that correction."]


def retrieval_sentences(rows: pd.DataFrame, k: int = 5) -> list[str]:
    """Per dataset and scorer: image→text R@k [Wilson 95%] against chance, with the corrected verdict."""
    r = rows[(rows.analysis == "retrieval") & (rows.metric == f"i2t_R@{k}")] if len(rows) else rows
    if "trained_on_perturbations" in r:  # the ablations' retrieval is in the table; the sentences keep to the defaults
        r = r[r.trained_on_perturbations != "yes"]
    out = []
    if r.empty:
        return ["No retrieval was run (no image-aware scorer or no dataset in this run)."]
    for (dataset, heldout), g in r.groupby(["dataset", "heldout"], sort=False):
        for _, row in g.iterrows():
            verdict = ("above chance" if significant(row) and row["value"] > row["chance"]
                       else "not distinguishable from chance")
            out.append(f"`{row['label']}` on `{dataset}` ({heldout or 'evaluation items'}): image→text R@{k} = "
                       f"{fmt_ci(row)} against chance {row['chance']:.2f} (n = {int(row['n'])}; "
                       f"corrected {fmt_p(row['p_holm'])}): {verdict}.")
    return out


def text_only_sentences(rows: pd.DataFrame) -> list[str]:
    """What the text-only baseline can and cannot show in this run (or that it is missing)."""
    blind = rows[(rows.family == "text-only") & (rows.analysis != "comparison")] if "family" in rows else rows.iloc[0:0]
    if blind.empty:
        return ["No text-only baseline was in this run, so no accuracy below can be checked against what the "
                "caption alone gives away."]
    out = []
    for model, g in blind.groupby("model", sort=False):
        lab = g["label"].iloc[0]
        out.append(f"`{lab}` never sees the image: it is left out of retrieval, where it would sit at chance by "
                   "construction, and shown where it informs, on the perturbations.")
        p = g[g.analysis == "perturbation"]
        for dataset, gd in p.groupby("dataset", sort=False):
            above = gd[(gd.value > 0.5) & gd.apply(significant, axis=1)]
            how = {"yes": "after training on these very kinds", "no": "without ever seeing a perturbation"}.get(
                training_of(gd), "with unknown training data")
            if above.empty:
                out.append(f"On `{dataset}` it is not above chance on any kind ({how}): no kind there is decidable "
                           "from this caption model alone.")
            else:
                best = above.sort_values("value", ascending=False)
                kinds = ", ".join(f"`{r.perturbation}` ({r.value:.2f})" for r in best.itertuples())
                out.append(f"On `{dataset}` it is above chance on {kinds} ({how}): that much is decidable from "
                           "the caption alone, so an image-aware scorer's accuracy on those kinds is not evidence "
                           "that it used the image.")
    return out


def perturbation_sentences(rows: pd.DataFrame) -> list[str]:
    """Per scene dataset and scorer: the kinds above, below and at chance after correction."""
    p = rows[rows.analysis == "perturbation"] if len(rows) else rows
    if p.empty:
        return ["No dataset with scene graphs was in this run, so the perturbation test was skipped."]
    out = []
    for (dataset, heldout), g in p.groupby(["dataset", "heldout"], sort=False):
        for model, gm in g.groupby("model", sort=False):
            lab = gm["label"].iloc[0]
            sig = gm.apply(significant, axis=1)
            above = gm[sig & (gm.value > 0.5)].sort_values("value", ascending=False)
            below = gm[sig & (gm.value < 0.5)].sort_values("value")
            rest = len(gm) - len(above) - len(below)
            parts = []
            if len(above):
                parts.append("above chance on " + ", ".join(f"`{r.perturbation}` ({r.value:.2f})"
                                                           for r in above.itertuples()))
            if len(below):
                parts.append("below chance on " + ", ".join(f"`{r.perturbation}` ({r.value:.2f})"
                                                           for r in below.itertuples()))
            if rest:
                parts.append(f"not distinguishable from chance on the other {rest}" if parts
                             else f"not distinguishable from chance on any of the {rest} kinds")
            tag = " " + ZERO_SHOT[training_of(gm)]
            out.append(f"`{lab}`{tag} on `{dataset}` ({heldout or 'evaluation items'}): " + "; ".join(parts) + ".")
    return out


def comparison_sentences(rows: pd.DataFrame, family: str = "between models") -> list[str]:
    """Per pair of scorers, over every dataset: where one is ahead of the other after correction (paired tests)."""
    c = rows[(rows.analysis == "comparison") & (rows.test_family == family)] if len(rows) else rows
    if c.empty:
        return [f"No paired comparison ({family}) was possible in this run: it needs two scorers on one dataset."]
    out = []
    for (a, b), g in c.groupby(["model", "other"], sort=False):
        la, lb = g["label"].iloc[0], g["other_label"].iloc[0]
        sig = g.apply(significant, axis=1)

        def where(d: pd.DataFrame) -> str:
            return "; ".join(f"on `{ds}` " + ", ".join(f"`{r.measure}` ({r.value:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}])"
                                                      for r in gd.sort_values("value", key=abs, ascending=False).itertuples())
                             for ds, gd in d.groupby("dataset", sort=False))

        a_wins, b_wins = g[sig & (g.value > 0)], g[sig & (g.value < 0)]
        if a_wins.empty and b_wins.empty:
            out.append(f"`{la}` and `{lb}` differ on none of the {len(g)} measures after correction (paired tests on "
                       f"{g.dataset.nunique()} dataset(s)).")
            continue
        parts = ([f"`{la}` is ahead {where(a_wins)}"] if len(a_wins) else []) + \
                ([f"`{lb}` is ahead {where(b_wins)}"] if len(b_wins) else [])
        rest = len(g) - len(a_wins) - len(b_wins)
        out.append(f"`{la}` vs `{lb}`: " + "; ".join(parts)
                   + (f"; no corrected difference on the other {rest} measures" if rest else "")
                   + " (difference of the first minus the second, paired 95% interval).")
    return out


def kind_sentences(rows: pd.DataFrame) -> list[str]:
    """Which perturbation kinds the zero-shot image-aware scorers get (above chance somewhere) and which none does,
    and which of those the zero-shot text-only baseline also gets."""
    p = rows[rows.analysis == "perturbation"] if len(rows) else rows
    if p.empty or "family" not in p:
        return []
    zs = p[(p.get("trained_on_perturbations", "no") == "no")] if "trained_on_perturbations" in p else p
    above = zs[zs.apply(significant, axis=1) & (zs.value > 0.5)]
    aware = set(above.loc[above.family != "text-only", "perturbation"])
    text = set(above.loc[above.family == "text-only", "perturbation"])
    kinds = list(dict.fromkeys(p["perturbation"]))
    out = []
    none = [k for k in kinds if k not in aware]
    if none:
        out.append(f"No zero-shot image-aware scorer is above chance on {names_list(none)} on any scene set.")
    image_only = [k for k in kinds if k in aware and k not in text]
    if image_only:
        out.append(f"On {names_list(image_only)} some zero-shot image-aware scorer is above chance while the "
                   "zero-shot text-only baseline is not: there the image is what decides.")
    both = [k for k in kinds if k in aware and k in text]
    if both:
        out.append(f"On {names_list(both)} the zero-shot text-only baseline is above chance too, so success there "
                   "does not show that the image was used.")
    return out


def family_sentences(rows: pd.DataFrame, k: int = 5) -> list[str]:
    """One verdict per scorer family (non-ablation scorers): does it beat chance in retrieval and on how many
    perturbation kinds, per dataset."""
    base = rows[(rows.analysis.isin(["retrieval", "perturbation"]))] if len(rows) else rows
    if "trained_on_perturbations" in base:
        base = base[base.trained_on_perturbations != "yes"]
    if base.empty:
        return []
    out = []
    for (fam, model), g in base.groupby(["family", "model"], sort=False):
        lab = g["label"].iloc[0]
        parts = []
        for dataset, gd in g.groupby("dataset", sort=False):
            r = gd[(gd.analysis == "retrieval") & (gd.metric == f"i2t_R@{k}")]
            p = gd[gd.analysis == "perturbation"]
            bits = []
            if len(r):
                row = r.iloc[0]
                bits.append(f"R@{k} {'above' if significant(row) and row.value > row.chance else 'not distinguishable from'}"
                            " chance")
            if len(p):
                n_above = int((p.apply(significant, axis=1) & (p.value > 0.5)).sum())
                bits.append(f"above chance on {n_above} of {len(p)} perturbation kinds")
            parts.append(f"`{dataset}`: " + ", ".join(bits))
        out.append(f"**{fam}** — `{lab}`: " + "; ".join(parts) + ".")
    return out


def heldout_sentences(rows: pd.DataFrame) -> list[str]:
    """What each dataset's evaluation items are (from the rows' ``heldout`` and ``split`` columns)."""
    if rows.empty or "heldout" not in rows:
        return []
    d = rows[rows.analysis != "comparison"].drop_duplicates("dataset")
    return [f"`{r.dataset}` is scored on its `{r.split}` items: {r.heldout}." for r in d.itertuples() if r.heldout]


def budget_sentences(rows: pd.DataFrame) -> list[str]:
    """The training budget of every stand-in trained here (``train_budget``), and what it means for comparisons."""
    if "train_budget" not in rows:
        return []
    b = rows[(rows.analysis != "comparison") & rows.train_budget.fillna("").astype(bool)].drop_duplicates("model")
    if b.empty:
        return []
    listed = "; ".join(f"`{r.label}`: {r.train_budget}" for r in b.itertuples())
    return [f"The stand-ins were trained here under different budgets ({listed}), so a difference between two of "
            "them is a difference between these stand-ins, not between their architectures in general."]


# ----------------------------------------------------------------------------- the data chapter
def datacards_sentences(rows: pd.DataFrame) -> list[str]:
    """What the dataset cards add up to: images in all, longest and shortest captions, skipped images, fallbacks,
    and which datasets carry a scene graph (``caption_source`` says the captions come from one)."""
    if rows.empty:
        return ["No dataset was loaded."]
    v = rows.pivot_table(index="dataset", columns="metric", values="value", sort=False)
    longest, shortest = v["caption_words_mean"].idxmax(), v["caption_words_mean"].idxmin()
    out = [f"The {len(v)} datasets hold {int(v['items'].sum())} images in all.",
           f"Captions differ in kind as much as in length: `{longest}` has the longest references (mean "
           f"{v.loc[longest, 'caption_words_mean']:.1f} words) and `{shortest}` the shortest (mean "
           f"{v.loc[shortest, 'caption_words_mean']:.1f} words).",
           f"{int(v['skipped_images'].sum())} image(s) could not be used (undecodable, or damaged in the cache) "
           "and were skipped."]
    if "stands_in_for" in rows:
        src = rows["stands_in_for"]
    elif {"fallback", "requested"} <= set(rows.columns):
        src = rows.loc[rows.fallback.fillna("") != "", "requested"]
    else:
        src = pd.Series(dtype=str)
    fallbacks = sorted({n for x in src.dropna() for n in str(x).split(", ") if n})
    if fallbacks:
        from analysis.datacards import FALLBACK

        out.append(f"These requested datasets could not be had and were replaced by `{FALLBACK}`: "
                   f"{', '.join(fallbacks)}.")
    if "caption_source" in rows:
        scene = list(dict.fromkeys(rows.loc[rows.caption_source.astype(str).str.contains("scene graph"), "dataset"]))
        if scene:
            out.append(f"Only {names_list(scene)} {'has' if len(scene) == 1 else 'have'} a known scene graph "
                       "(objects, counts, sizes, one relation), which is what lets later chapters build controlled "
                       "hard negatives; scene references are generated, not human-written.")
    return out


# ----------------------------------------------------------------------------- the reproducibility appendix
def provenance_sentences(rows: pd.DataFrame) -> list[str]:
    """The commit, how many package versions were recorded (and which are missing), and how many cache entries
    verified against their manifests (and which failed)."""
    pk = rows[rows.section == "package"]
    missing = pk[pk.value == "missing"]["dataset"].tolist()
    entries = rows[rows.metric == "entry_sha256"]
    ok = entries["verified"].astype(bool) if "verified" in entries else pd.Series(False, index=entries.index)
    damaged = entries.loc[~ok, "dataset"].tolist()
    commit = rows.loc[rows.metric == "git_commit", "value"]
    return [f"Built from commit `{commit.iloc[0] if len(commit) else 'unknown'}` with {len(pk)} recorded package "
            f"versions" + (f" ({len(missing)} missing: {', '.join(missing)})" if missing else " (none missing)")
            + f" and {int(ok.sum())} cache entries verified against their manifests"
            + (f" ({len(damaged)} failed verification: {', '.join(damaged)})." if damaged else ".")]


# ----------------------------------------------------------------------------- the measures chapter
def _of(rows: pd.DataFrame, analysis: str, **eq) -> pd.DataFrame:
    """Rows of one analysis whose columns equal ``eq`` (empty when a column is absent)."""
    if rows.empty or "analysis" not in rows:
        return rows.iloc[0:0]
    out = rows[rows.analysis == analysis]
    for k, v in eq.items():
        out = out[out[k] == v] if k in out else out.iloc[0:0]
    return out


def measures_unavailable_sentences(rows: pd.DataFrame) -> list[str]:
    """One sentence per metric that could not be computed, with its reason (never shown as 0)."""
    u = _of(rows, "unavailable")
    return [f"`{r.measure}` was unavailable in this run ({r.note}); it is left out, not counted as 0."
            for r in u.itertuples()]


def ladder_sentences(rows: pd.DataFrame) -> list[str]:
    """Which metrics keep every step of the scene-graph ladder (share above ½, Holm-corrected sign test), and for
    each step which metrics do not."""
    lad = _of(rows, "ladder", metric="ordered")
    if lad.empty:
        return ["No metric was scored on the scene-graph ladder in this run."]
    kept = lad.assign(kept=lad.apply(lambda r: significant(r) and r["value"] > 0.5, axis=1))
    by = kept.groupby("measure", sort=False)
    n_scenes = int(lad["n"].max())
    all_kept = [m for m, g in by if g["kept"].all()]
    m = len(lad)
    out = [f"Of {by.ngroups} metrics scored on {n_scenes} scenes, "
           + (f"{names_list(all_kept)} keep{'s' if len(all_kept) == 1 else ''} every step of the ladder"
              if all_kept else "none keeps every step of the ladder")
           + f" (true > relation swap > object swap > another scene's caption; exact sign tests, Holm-corrected "
             f"over the {m} tests of every metric and step)."]

    def cell(r) -> str:
        ties, n = r.get("ties", 0), r.get("n", 0)
        return "all tied" if n and ties == n else fmt_ci(r)

    for step, g in kept.groupby("condition", sort=False):
        fail = g[~g["kept"]]
        if len(fail) and len(fail) < len(g):
            out.append(f"Step *{step}* is not kept by " + ", ".join(
                f"`{r['label']}` ({cell(r)})" for _, r in fail.iterrows()) + ".")
        elif len(fail):
            out.append(f"No metric keeps step *{step}*.")
    return out


def figure1_sentences(rows: pd.DataFrame) -> list[str]:
    """Which metrics score the degenerate (and the broken) Figure-1 form above the fluent caption on at least
    half the scenes, and what the linguistic measures say about the three forms."""
    if _of(rows, "figure1").empty:
        return ["No metric scored the Figure-1 forms in this run."]
    sh = _of(rows, "figure1", metric="share")
    sh = sh[sh.condition.str.endswith("> fluent")] if len(sh) else sh
    out = [] if len(sh) else ["No metric scored the Figure-1 forms in this run."]
    for form in ("degenerate", "broken"):
        g = sh[sh.condition == f"{form} > fluent"]
        if g.empty:
            continue
        fooled = g[g.value > 0.5].sort_values("value", ascending=False)
        if len(fooled):
            out.append(f"The {form} Figure-1 caption scores above the fluent one on more than half the scenes (ties "
                       "count ½; point estimate, 95% interval and sign-test p) under " + ", ".join(
                           f"`{r['label']}` ({fmt_ci(r)}, {fmt_p(r.get('p_sign', float('nan')))})"
                           for _, r in fooled.iterrows()) + ".")
        else:
            out.append(f"Every metric scores the fluent caption above the {form} one on most scenes (the highest "
                       f"share for the {form} form: `{g.sort_values('value').iloc[-1]['label']}`, "
                       f"{fmt_ci(g.sort_values('value').iloc[-1])}).")
    more = _of(rows, "figure1", metric="share")
    more = more[more.condition == "degenerate more fluent"].set_index("measure") if len(more) else more
    if {"perplexity", "slor"} <= set(more.index):
        out.append("The fluency LM finds the degenerate form more fluent than the fluent caption on "
                   f"{fmt_ci(more.loc['perplexity'])} of the scenes by perplexity and {fmt_ci(more.loc['slor'])} by "
                   f"SLOR (sign tests {fmt_p(more.loc['perplexity'].get('p_sign', float('nan')))} and "
                   f"{fmt_p(more.loc['slor'].get('p_sign', float('nan')))}).")
    lin = _of(rows, "figure1")
    lin = lin[lin.condition.isin(["fluent", "degenerate"])]
    parts = []
    for measure, metric, what in (("perplexity", "median", "median perplexity"), ("slor", "mean", "mean SLOR"),
                                  ("grammar errors", "share flagged", "share flagged by the grammar detector"),
                                  ("visual words", "mean count", "visual words per caption")):
        q = lin[(lin.measure == measure) & (lin.metric == metric)].set_index("condition")["value"]
        if {"fluent", "degenerate"} <= set(q.index):
            parts.append(f"{what} {fmt_num(q['fluent'])} → {fmt_num(q['degenerate'])}")
    if parts:
        out.append("From the fluent to the degenerate form: " + "; ".join(parts) + ".")
    return out


def fluency_sentences(rows: pd.DataFrame) -> list[str]:
    """Per dataset: how often shuffling a reference's words makes it worse under perplexity and SLOR."""
    f = _of(rows, "fluency")
    if f.empty:
        return ["Fluency was not measured in this run."]
    out = []
    for d, g in f.groupby("dataset", sort=False):
        w = g[g.condition == "shuffled worse"].set_index("measure")
        med = g[(g.measure == "perplexity") & (g.metric == "median")].set_index("condition")["value"]
        if "perplexity" in w.index and {"fluent", "shuffled"} <= set(med.index):
            r = w.loc["perplexity"]
            out.append(f"On `{d}`, shuffling a caption's words raises its perplexity for {fmt_ci(r)} of "
                       f"{int(r['n'])} captions (median {med['fluent']:.0f} → {med['shuffled']:.0f})"
                       + (f" and lowers its SLOR for {fmt_ci(w.loc['slor'])}" if "slor" in w.index else "") + ".")
    return out


def grammar_sentences(rows: pd.DataFrame) -> list[str]:
    """The grammar detector's precision and recall on the labelled set, and how often it flags captions that
    are grammatical (human-written; template-made)."""
    g = _of(rows, "grammar")
    if g.empty:
        return ["The grammar detector was not validated in this run."]
    lab = g[g.condition == "labelled set"].set_index("metric")
    out = []
    if {"precision", "recall"} <= set(lab.index):
        p, r = lab.loc["precision"], lab.loc["recall"]
        prec = (f"precision {fmt_ci(p)} (n = {int(p['n'])} flagged)" if p["n"] else
                "no precision (it flagged nothing)")
        out.append(f"On the labelled set, the grammar detector has {prec} and recall {fmt_ci(r)} "
                   f"(n = {int(r['n'])} ungrammatical), Wilson 95% intervals.")
    for r in g[g.metric == "share flagged"].itertuples():
        k = int(round(r.value * r.n))
        out.append(f"It flags {k} of {int(r.n)} {r.condition} (`{r.dataset}`; share {fmt_ci(r._asdict())}); these "
                   "are meant to be grammatical, so each flag is a false alarm unless the caption itself is wrong.")
    return out


def chair_sentences(rows: pd.DataFrame) -> list[str]:
    """CHAIR-s of the true caption against the object-swap rung (which must hallucinate)."""
    c = _of(rows, "chair", metric="chair-s").set_index("condition")["value"] if len(rows) else pd.Series(dtype=float)
    if not {"true", "object swap"} <= set(c.index):
        return ["CHAIR was not computed on the ladder in this run."]
    return [f"CHAIR-s is {c['true']:.2f} for the true captions (0 if CHAIR finds every true object) and "
            f"{c['object swap']:.2f} for the object swaps (1 if it finds every replaced object, which shares no noun "
            "with the scene's objects)."]


# ----------------------------------------------------------------------------- the probe's pages (issue 9)
def _summary_of(rows: pd.DataFrame) -> pd.DataFrame:
    s = rows[rows["analysis"] == "summary"] if "analysis" in rows else rows.iloc[:0]
    return s.set_index(["system", "measure"]) if len(s) else s


def _cell(s: pd.DataFrame, system: str, measure: str) -> str | None:
    """``0.52 [0.47, 0.57]`` of a summary row, or None when the run has no such row."""
    if not len(s) or (system, measure) not in s.index:
        return None
    r = s.loc[(system, measure)]
    r = r.iloc[0] if isinstance(r, pd.DataFrame) else r
    if not r["value"] == r["value"]:
        return None
    lo, hi = r.get("low", float("nan")), r.get("high", float("nan"))
    n = r.get("n", float("nan"))
    few = f" (from only {int(n)} caption{'s' if n != 1 else ''})" if n == n and n < 10 else ""
    return fmt_interval(r["value"], lo, hi) + few


def _value(rows: pd.DataFrame, analysis: str, measure: str, system: str | None = None) -> float | None:
    r = rows[(rows["analysis"] == analysis) & (rows["measure"] == measure)]
    if system is not None:
        r = r[r["system"] == system]
    return float(r["value"].iloc[0]) if len(r) and r["value"].iloc[0] == r["value"].iloc[0] else None


def probe_method_sentences(rows: pd.DataFrame) -> list[str]:
    """The XE captioner's size, the test split, and its held-out quality beside the references' (summary rows);
    says so when the XE or the reference rows are missing."""
    out = []
    n_par = _value(rows, "captioner", "n_parameters", "xe")
    vocab = _value(rows, "captioner", "vocab_size", "xe")
    n_test, n_scenes = _value(rows, "data", "test images"), _value(rows, "data", "test scenes")
    n_train = _value(rows, "data", "train images")
    if n_par is not None and vocab is not None:
        out.append(f"The XE captioner has {n_par / 1e6:.2f} M parameters and writes from a vocabulary of "
                   f"{int(vocab)} words, all taken from the training references.")
    if n_train is not None and n_test is not None:
        out.append(f"It learns from {int(n_train)} training images; the probe's captions are written for "
                   f"{int(n_test)} held-out test images, {int(n_scenes or 0)} of them stamp scenes with a known "
                   "scene graph.")
    n_scst = _value(rows, "data", "SCST images")
    if n_scst is not None:
        out.append(f"SCST runs on {int(n_scst)} other images (`stamp-scenes-scst`): fresh scenes of the training "
                   "stamps, with no val or test object set, that neither the captioner nor any stand-in scorer was "
                   "trained on.")
    s = _summary_of(rows)
    xe = _cell(s, "xe", "cider_d")
    xe_sc, ref_sc = _cell(s, "xe (stamp scenes)", "cider_d"), _cell(s, "references (stamp scenes)", "cider_d")
    if xe is None:
        out.append("No XE summary was computed in this run, so the captioner's held-out quality is not shown.")
    else:
        out.append(f"On the test split the XE captioner's greedy captions reach CIDEr-D {xe} (mean, bootstrap 95% "
                   "interval over images).")
        if xe_sc is not None and ref_sc is not None:
            out.append(f"On the stamp scenes alone, where each image has five template-written references, it reaches "
                       f"{xe_sc}, and a held-out reference scored against the other four the same way reaches "
                       f"{ref_sc}: what a correct caption written like the references gets on these images.")
        else:
            out.append("No like-for-like reference line (stamp scenes only) was computed in this run.")
    lam = _value(rows, "mix", "lambda")
    if lam is not None:
        out.append(f"The mix reward uses λ = {lam:.3g} (equal spread of the CIDEr-D and clip-mini terms over the XE "
                   "captioner's own samples).")
    return out


#: (measure, words) compared with the baselines on a reward page
_COMPARE = (("cider_d", "CIDEr-D"), ("clip_s", "CLIP-S under clip-mini"), ("slor", "SLOR"),
            ("grammar_error", "the share of captions the rule-based grammar detector flags"),
            ("visual_words", "visual words per caption"), ("length", "words per caption"),
            ("relation_correct", "relation correctness"), ("object_recall", "object recall"))


def probe_reward_sentences(rows: pd.DataFrame, systems: list[str]) -> list[str]:
    """For each system of a reward page: how its test captions compare with the XE and CIDEr-D captioners on the
    main measures (values with intervals), its sentence patterns, the reward's rise during training, and for two
    ITM outputs how often they wrote the same caption. Missing baselines are named."""
    out = []
    s = _summary_of(rows)
    present = set(s.index.get_level_values(0)) if len(s) else set()
    for sy in systems:
        if sy not in present:
            out.append(f"No summary of `{sy}` was computed in this run.")
            continue
        bases = [b for b in ("xe", "cider-d") if b in present and b != sy]
        missing = [b for b in ("xe", "cider-d") if b not in present and b != sy]
        parts = []
        for m, words in _COMPARE:
            mine = _cell(s, sy, m)
            if mine is None:
                continue
            ref = "; ".join(f"{b} {_cell(s, b, m)}" for b in bases if _cell(s, b, m) is not None)
            parts.append(f"{words} {mine}" + (f" ({ref})" if ref else ""))
        if parts:
            out.append(f"Captions of `{sy}`: " + ", ".join(parts) + ".")
        if missing:
            out.append(f"The baseline{'s' if len(missing) > 1 else ''} {' and '.join(missing)} "
                       f"{'are' if len(missing) > 1 else 'is'} missing from this run, so `{sy}` is compared with "
                       f"{' and '.join(bases) if bases else 'nothing'}.")
        pat = rows[(rows["analysis"] == "patterns") & (rows["system"] == sy)].set_index("measure")["value"]
        base = rows[(rows["analysis"] == "patterns") & (rows["system"] == "xe")].set_index("measure")["value"]
        if {"template_entropy", "distinct_captions"} <= set(pat.index):
            ref = (f" (XE: {base['template_entropy']:.2f} bits, {base['distinct_captions']:.0%})"
                   if {"template_entropy", "distinct_captions"} <= set(base.index) else "")
            out.append(f"Their POS templates have {pat['template_entropy']:.2f} bits of entropy and "
                       f"{pat['distinct_captions']:.0%} of the seed-0 captions are distinct{ref}.")
        cur = rows[(rows["analysis"] == "training curve") & (rows["system"] == sy) & (rows["measure"] == "reward_mean")]
        if len(cur):
            c0 = cur[cur["seed"] == cur["seed"].min()].sort_values("step")
            k = max(1, min(10, len(c0) // 4))
            a, b = c0["value"].iloc[:k].mean(), c0["value"].iloc[-k:].mean()
            out.append(f"During SCST the mean sampled reward of `{sy}` went from {fmt_num(a)} (first {k} steps) to "
                       f"{fmt_num(b)} (last {k}).")
    same = rows[(rows["analysis"] == "itm output") & (rows["measure"] == "identical captions")]
    for _, r in same.iterrows():
        ci = (f" (Wilson 95% interval {r['low']:.0%} to {r['high']:.0%})"
              if "low" in r and r["low"] == r["low"] else "")
        out.append(f"The ITM-logit and ITM-probability rewards wrote the same caption for {r['value']:.0%} of the "
                   f"{int(r['n'])} test images{ci} (seed 0): "
                   + ("the choice changed the captions." if r["value"] < 1 else "the choice made no difference."))
    return out


def probe_cross_sentences(rows: pd.DataFrame) -> list[str]:
    """For each scorer: the captioner it rates highest, and the rank it gives the captioner trained on it."""
    out = []
    c = rows[rows["analysis"] == "cross"] if "analysis" in rows else rows.iloc[:0]
    if not len(c):
        return ["No cross-scoring was computed in this run."]
    for sc, g in c.groupby("scorer", sort=False):
        g = g[~g["system"].isin(["references"])]
        if not len(g):
            continue
        best = g.loc[g["value"].idxmax()]
        out.append(f"`{sc}` rates the captions of `{best['system']}` highest "
                   f"({fmt_interval(best['value'], best['low'], best['high'])}).")
    own = rows[rows["analysis"] == "own reward"]
    for _, r in own.iterrows():
        rank = int(r["value"])
        out.append(f"Among the {int(r['n'])} SCST captioners, `{r['scorer']}` ranks the one trained on it "
                   + ("first." if rank == 1 else f"{rank}{'nd' if rank == 2 else 'rd' if rank == 3 else 'th'}."))
    return out


def probe_decoding_sentences(sweep: pd.DataFrame) -> list[str]:
    """Per scorer and prior: the guiding score, the prior log-probability per token and the visual words per caption
    at the smallest and the largest prior weight."""
    if not len(sweep):
        return ["No reward-guided decoding was run."]
    out = []
    d = sweep.assign(lp=sweep["prior_logprob"] / sweep["tokens"].clip(lower=1))
    for (sc, pr), g in d.groupby(["scorer", "prior"], sort=False):
        m = g.groupby("weight")[["score", "lp", "visual_words"]].mean().sort_index()
        if len(m) < 2:
            continue
        lo, hi = m.index[0], m.index[-1]
        out.append(f"Guided by `{sc}` with the {pr} prior, raising the prior weight from {lo:g} to {hi:g} moves the "
                   f"mean score from {fmt_num(m.loc[lo, 'score'])} to {fmt_num(m.loc[hi, 'score'])}, the prior "
                   f"log-probability per token from {fmt_num(m.loc[lo, 'lp'])} to {fmt_num(m.loc[hi, 'lp'])} and the "
                   f"visual words per caption from {fmt_num(m.loc[lo, 'visual_words'])} to "
                   f"{fmt_num(m.loc[hi, 'visual_words'])}.")
    return out


# ----------------------------------------------------------------------------- the probe's findings (issue 9)
def _probe_ci(r) -> str:
    """``-0.12 [-0.20, -0.05]`` of a findings row (``value``, ``low``, ``high``; :func:`fmt_num` each, so a
    perplexity difference in the hundreds is not shown with two decimals)."""
    return fmt_interval(r["value"], r["low"], r["high"])


def _held(x) -> bool:
    """A findings row's ``supports``: True only for a test that ran and holds (None / NaN: not run)."""
    return x is not None and x == x and bool(x)


def _seeds(n) -> str:
    n = int(n) if n == n else 0
    return f"{n} seed{'s' if n != 1 else ''}"


def _and(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c`` (no backticks)."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def _probe_tests(rows: pd.DataFrame, v) -> pd.DataFrame:
    """The tests behind one verdict: the finding's rows of this system that ran (controls and descriptive rows
    left out) and, for F3, the pooled correlation of its own scorer."""
    r = rows[(rows["finding"] == v["finding"]) & (rows["status"] == "ok") & rows["direction_expected"].notna()]
    mine = r[(r["system"] == v["system"]) & ~r["component"].str.endswith("(blind control)")]
    pooled = r[(r["system"] == "(pooled)") & (r["scorer"] == v["scorer"])]
    return pd.concat([pooled, mine])


def probe_finding_sentences(verdicts: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    """One or two sentences per finding and probed system (``analysis.findings.verdicts`` and the rows it was
    made from): the verdict with the system's family and seed count, every test with its value and interval
    (system minus baseline, or the edit/insertion contrast, or rho) and whether it holds after Holm's
    correction; then what weakens it: the text-only system reproducing the finding too, the text-only scorer
    showing the same effect on these captions, components that could not be tested, a single seed."""
    if verdicts is None or verdicts.empty:
        return ["No finding of the probe was tested in this run."]
    out = []
    for _, v in verdicts.iterrows():
        fam = f"{v['family']}, " if v.get("family") else ""
        head = (f"**{v['finding']}** ({v.get('finding_name', v['finding'])}), `{v['system']}` "
                f"({fam}{_seeds(v['seeds'])}): **{v['verdict']}**")
        if v["verdict"] == "not testable here":
            out.append(f"{head}: {v['reason']}.")
            continue
        t = _probe_tests(rows, v)
        parts = [f"{r['test']}" + (f" vs `{r['baseline']}`" if r["baseline"] else "")
                 + (f" (`{r['scorer']}`)" if r["system"] == "(pooled)" else "")
                 + f" {_probe_ci(r)} (" + (f"margin {fmt_num(r['null'])}; " if r["null"] else "")
                 + f"{'holds' if _held(r['supports']) else 'not shown'}, corrected {fmt_p(r['p_holm'])})"
                 for _, r in t.iterrows()]
        first = head + (": " + "; ".join(parts) if parts else "") + "."
        notes = []
        comps = v.get("components") if isinstance(v.get("components"), dict) else {}
        untested = [c for c, s in comps.items() if s == "untestable"]
        if untested:
            notes.append(f"{_and(untested)} could not be tested")
        if bool(v.get("blind_flag", False)):
            notes.append(f"the text-only `blind` system reproduces {v['finding']} too, so here it is not evidence "
                         "about image–text alignment")
        elif v["family"] == "text-only" or v["system"] == "blind":
            notes.append("this system never sees the image, so what it shows is a property of the text")
        if v.get("blind_control") == "supports":
            notes.append("the text-only scorer `blind` shows the same effect on these captions")
        if int(v["seeds"]) == 1:
            notes.append("with 1 seed the verdict may be one training run's accident")
        out.append(first + (" " + "; ".join(notes)[:1].upper() + "; ".join(notes)[1:] + "." if notes else ""))
    return out


def probe_missing_sentences(rows: pd.DataFrame) -> list[str]:
    """What the probe's findings could not test in this run, from the rows' ``status``: missing baselines (a
    finding that needs them is not testable here), systems without captions, edits not scored by a system's own
    scorer, score columns absent, tests with too few captions, and a missing text-only system."""
    if rows is None or rows.empty:
        return ["No finding of the probe was tested in this run."]
    out = []
    st = rows["status"]
    for base, g in rows[st == "missing baseline"].groupby("baseline", sort=False):
        fs = sorted(set(g["finding"]))
        out.append(f"The baseline `{base}` has no captions in this run, so {_and(fs)} "
                   f"{'is' if len(fs) == 1 else 'are'} not testable here (each is a comparison with every baseline).")
    miss = list(dict.fromkeys(rows.loc[st == "missing system", "system"]))
    if miss:
        out.append(f"{names_list(miss)} {'has' if len(miss) == 1 else 'have'} no captions in this run, so no finding "
                   "is tested for {}.".format("it" if len(miss) == 1 else "them"))
    for (system, scorer), g in rows[st == "missing edits"].groupby(["system", "scorer"], sort=False):
        fs = sorted(set(g["finding"]))
        out.append(f"No edits of `{system}`'s captions were scored by its own scorer `{scorer}`, so the edit tests of "
                   f"{_and(fs)} are not testable here.")
    for r in rows[st == "missing scorer"].drop_duplicates("scorer").itertuples():
        out.append(f"The caption table has no `score:{r.scorer}` column, so the visual-word correlation of "
                   f"`{r.scorer}` is not testable here.")
    for r in rows[st == "missing column"].drop_duplicates("note").itertuples():
        out.append(f"{r.note[:1].upper()}{r.note[1:]}, so {r.test} ({r.finding}) is not testable here.")
    few = rows[st == "too few"]
    for system, g in few.groupby("system", sort=False):
        items = [f"{r.test}" + (f" vs `{r.baseline}`" if r.baseline else "") + f" (n = {int(r.n)})"
                 for r in g.itertuples()]
        out.append(f"Too few captions or edits to test, for `{system}`: {'; '.join(items)}.")
    fam = rows["family"] if "family" in rows else pd.Series("", index=rows.index)
    if not ((rows["system"] == "blind") | (fam == "text-only")).any():
        out.append("No text-only `blind` system was in this run, so no verdict can be checked against what the "
                   "caption text alone gives away.")
    return out


def probe_correction_sentences(rows: pd.DataFrame) -> list[str]:
    """How the probe's intervals and p-values were made: the confidence level and interval kinds in the rows, and
    how many tests each Holm family holds."""
    t = rows.dropna(subset=["p"]) if rows is not None and len(rows) and "p" in rows else None
    if t is None or t.empty:
        return ["No test of the probe's findings was run."]
    conf = rows["confidence"].dropna()
    level = f"{conf.iloc[0]:.0%} " if len(conf) else ""
    kinds = [k for k in dict.fromkeys(rows["interval"].dropna()) if k]
    counts = t.groupby("test_family", sort=False).size()
    fams = ", ".join(f"*{f}* ({n} test{'s' if n != 1 else ''})" for f, n in counts.items())
    return [f"Intervals are {level}two-level bootstrap intervals ({_and(kinds) or 'percentile'}; images drawn once "
            "for both sides of a comparison, seeds drawn within each system); p-values are two-sided bootstrap p, "
            f"Holm-corrected within each family: {fams}; a test holds at α = {ALPHA} after that correction."]


# ----------------------------------------------------------------------------- realignment (ReCap) diagnostics
def _map_label(method: str, standardize) -> str:
    return "unaligned" if method == "none" else f"{method}{' (z-scored)' if bool(standardize) else ''}"


def _realign_view(rows: pd.DataFrame, setting: str, stage: str, metric: str) -> pd.DataFrame:
    """The summary rows (in-domain, or transfer pooled over folds) of one setting, stage and metric."""
    if rows is None or not len(rows) or "stage" not in rows:
        return pd.DataFrame()
    r = rows[(rows["setting"] == setting) & (rows["stage"] == stage) & (rows["metric"] == metric)]
    return r[r["fold"].astype(str).isin(["", "pooled"])]


def _realign_where(r) -> str:
    pooled = str(r["fold"]) == "pooled"
    return (f"`{r['dataset']}`, {r['setting']}, {int(r['n'])} evaluation images"
            + (" pooled over the held-out folds" if pooled else ""))


def _realign_settings(rows: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(rows["setting"])) if rows is not None and len(rows) and "setting" in rows else []


def realignment_gap_sentences(rows: pd.DataFrame) -> list[str]:
    """Per setting: the centroid distance and the true-/random-pair cosines before the map and after the first
    map in the rows, and the lowest centroid distance of any map; says so when the unaligned baseline or every
    map is missing."""
    out = []
    settings = _realign_settings(rows)
    if not settings:
        return ["No alignment diagnostics were run."]
    for setting in settings:
        before = _realign_view(rows, setting, "before", "centroid_distance")
        after = _realign_view(rows, setting, "after", "centroid_distance")
        if before.empty:
            out.append(f"The {setting} rows have no unaligned baseline, so no change of the modality gap is stated "
                       "for them.")
            continue
        b = before.iloc[0]
        if after.empty:
            out.append(f"On {_realign_where(b)}, the centroid distance of `{b['label']}` is {b['value']:.3f} "
                       "unaligned; no map was evaluated.")
            continue
        a = after.iloc[0]
        best = after.loc[after["value"].idxmin()]
        cos = {(st, m): _realign_view(rows, setting, st, m) for st in ("before", "after")
               for m in ("true_pair_cosine", "random_pair_cosine")}

        def val(st, m, method, std):
            g = cos[(st, m)]
            g = g[(g["method"] == method) & (g["standardize"].astype(bool) == bool(std))] if st == "after" else g
            return f"{g['value'].iloc[0]:.2f}" if len(g) else "n/a"

        lowest = ("" if best.name == a.name else
                  f" (lowest of the {len(after)} maps: {best['value']:.3f}, "
                  f"`{_map_label(best['method'], best['standardize'])}`)")
        out.append(f"On {_realign_where(b)}: the centroid distance between the image and caption embeddings of "
                   f"`{b['label']}` is {b['value']:.3f} unaligned and {a['value']:.3f} after the "
                   f"`{_map_label(a['method'], a['standardize'])}` map{lowest}; the mean true-pair cosine goes from "
                   f"{val('before', 'true_pair_cosine', '', False)} to "
                   f"{val('after', 'true_pair_cosine', a['method'], a['standardize'])} and the random-pair cosine "
                   f"from {val('before', 'random_pair_cosine', '', False)} to "
                   f"{val('after', 'random_pair_cosine', a['method'], a['standardize'])}.")
    return out


def _change_verdict(c) -> str:
    if c is None:
        return "no paired test in these rows"
    sig = c["p_holm"] == c["p_holm"] and c["p_holm"] <= ALPHA
    word = ("a significant gain" if c["value"] > 0 else "a significant loss") if sig else \
        "not distinguishable from no change"
    return (f"change {c['value']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}], corrected {fmt_p(c['p_holm'])}: "
            f"{word}")


def realignment_retrieval_sentences(rows: pd.DataFrame, k: int = 1) -> list[str]:
    """Per setting and direction: R@k unaligned and with the best map (Wilson intervals), chance, and the
    Holm-corrected paired test of the change; then what the text-only baseline can say (its row's note, or
    that it is missing)."""
    out = []
    settings = _realign_settings(rows)
    if not settings:
        return ["No retrieval before/after alignment was run."]
    for setting in settings:
        for d, name in (("i2t", "image→text"), ("t2i", "text→image")):
            metric = f"{d}_R@{k}"
            before = _realign_view(rows, setting, "before", metric)
            after = _realign_view(rows, setting, "after", metric)
            if before.empty:
                out.append(f"The {setting} rows have no unaligned {name} R@{k}, so no before/after comparison is "
                           "stated.")
                continue
            b = before.iloc[0]
            if after.empty:
                out.append(f"On {_realign_where(b)}: {name} R@{k} is {fmt_ci(b)} unaligned (chance "
                           f"{b['chance']:.2f}); no map was evaluated.")
                continue
            best = after.loc[after["value"].idxmax()]
            ch = _realign_view(rows, setting, "change", metric)
            ch = ch[(ch["method"] == best["method"]) & (ch["standardize"].astype(bool) == bool(best["standardize"]))]
            out.append(f"On {_realign_where(b)}: {name} R@{k} is {fmt_ci(b)} unaligned and {fmt_ci(best)} with the "
                       f"best map, `{_map_label(best['method'], best['standardize'])}` (chance {b['chance']:.2f}); "
                       f"{_change_verdict(ch.iloc[0] if len(ch) else None)}.")
    blind = rows[rows["model"] == "blind"] if "model" in rows else rows.iloc[0:0]
    if blind.empty:
        out.append("No text-only `blind` row is in this run, so nothing says what the caption alone would retrieve.")
    else:
        note = str(blind["note"].iloc[0]) if "note" in blind else ""
        out.append(f"`blind` has no value here: {note or 'it has no retrieval meaning'}.")
    return out


def realignment_setting_sentences(rows: pd.DataFrame, k: int = 1) -> list[str]:
    """In-domain against transfer: the change of image→text R@k made by the first map of the rows in each
    setting, or why the two cannot be compared."""
    settings = _realign_settings(rows)
    changes = {}
    for s in settings:
        c = _realign_view(rows, s, "change", f"i2t_R@{k}")
        if len(c):
            changes[s] = c.iloc[0]
    if len(changes) < 2:
        have = ", ".join(changes) or "neither setting"
        return [f"Only {have} has a tested change of image→text R@{k}, so in-domain and transfer cannot be "
                "compared here."]
    (s1, c1), (s2, c2) = list(changes.items())[:2]
    m1 = _map_label(c1["method"], c1["standardize"])
    where = {s: s if s == "in-domain" else f"on {s}" for s in (s1, s2)}
    which = (f"larger {where[s1]}" if c1["value"] > c2["value"] else f"larger {where[s2]}"
             if c2["value"] > c1["value"] else "the same in both")
    return [f"The `{m1}` map changes image→text R@{k} by {c1['value']:+.2f} [{c1['ci_low']:+.2f}, "
            f"{c1['ci_high']:+.2f}] {where[s1]} (corrected {fmt_p(c1['p_holm'])}) and by {c2['value']:+.2f} "
            f"[{c2['ci_low']:+.2f}, {c2['ci_high']:+.2f}] {where[s2]} (corrected {fmt_p(c2['p_holm'])}): the change "
            f"is {which} as a point estimate (intervals: paired bootstrap within each setting; the two settings are "
            "evaluated on different images, so their difference is not itself tested)."]


def realignment_sweep_sentences(sweep: pd.DataFrame, k: int = 1, tol: float = 0.02) -> list[str]:
    """Per method of the data-fraction sweep: image→text R@k (mean over seeds) with every fitting pair and the
    smallest fraction from which on every mean is at least that value less ``tol``."""
    if sweep is None or not len(sweep):
        return ["No data-fraction sweep was run."]
    out = []
    r = sweep[sweep["metric"] == f"i2t_R@{k}"]
    for method, g in r.groupby("method", sort=False):
        mean = g.groupby("fraction")["value"].mean().sort_index()
        n_fit = g.groupby("fraction")["n_fit"].first()
        if 1.0 not in mean.index:
            out.append(f"The `{method}` sweep has no 100% point, so no fraction is compared with the full fit.")
            continue
        full, f = mean[1.0], 1.0
        for frac in sorted(mean.index, reverse=True):  # the smallest f with every fraction >= f close enough
            if mean[frac] < full - tol:
                break
            f = float(frac)
        seeds = g["seed"].nunique()
        on = f" on {int(g['n'].iloc[0])} evaluation images" if "n" in g and g["n"].notna().any() else ""
        reach = (f"no smaller fraction of them comes within {tol:.2f} of that" if f == 1.0 else
                 f"it is within {tol:.2f} of that from {f:.0%} of them ({int(n_fit[f])} pairs) on")
        out.append(f"`{method}`: image→text R@{k}{on} is {full:.2f} with all {int(n_fit[1.0])} fitting pairs and "
                   f"{reach} (mean of {seeds} seed{'s' if seeds != 1 else ''}).")
    return out or [f"The sweep has no image→text R@{k} rows."]


# ----------------------------------------------------------------------------- realignment: captions (ReCap)
_RECAP_METRIC_NAMES = {"bleu-4": "BLEU-4", "meteor": "METEOR", "rouge-l": "ROUGE-L", "cider-d": "CIDEr-D",
                       "sg-f1": "sg-f1 (SPICE-style stand-in)"}


def recap_metric_label(metric: str) -> str:
    """``cider-d`` -> ``CIDEr-D``; ``aclip-s:clip-mini`` -> ``aCLIP-S (clip-mini)``."""
    if metric in _RECAP_METRIC_NAMES:
        return _RECAP_METRIC_NAMES[metric]
    base, _, scorer = metric.partition(":")
    names = {"clip-s": "CLIP-S", "refclip-s": "RefCLIP-S", "aclip-s": "aCLIP-S", "refaclip-s": "RefaCLIP-S"}
    name = names.get(base, base)
    return f"{name} ({scorer})" if scorer else name


def _recap(rows: pd.DataFrame, analysis: str) -> pd.DataFrame:
    if rows is None or not len(rows) or "analysis" not in rows:
        return pd.DataFrame(columns=["analysis", "system", "metric", "value"])
    return rows[rows["analysis"] == analysis]


def _recap_data(rows: pd.DataFrame) -> dict:
    d = _recap(rows, "data")
    return dict(zip(d["metric"], d["value"])) if len(d) else {}


def recap_setup_sentences(rows: pd.DataFrame) -> list[str]:
    """What was captioned and from what: test images, datastore size, k, and the two leak checks."""
    d = _recap_data(rows)
    if "test images" not in d:
        return ["The rows hold no data description, so what was captioned is not stated here."]
    n, scenes = int(d["test images"]), int(d.get("test stamp scenes", 0))
    leak = d.get("datastore captions equal to a test reference", float("nan"))
    fit = d.get("test images among the map's fitting images", float("nan"))
    checks = []
    for v, what in ((leak, "datastore captions equal a test reference"),
                    (fit, "test images are among the images the map was fitted on")):
        checks.append(f"{what}: not checked" if v != v else f"{int(v)} {what}")
    note = ""
    if "note" in rows and rows["note"].astype(str).str.len().gt(0).any():
        note = " " + str(rows.loc[rows["note"].astype(str).str.len() > 0, "note"].iloc[0]).rstrip(".") + "."
    out = [f"{n} held-out test images of the probe ({scenes} stamp scenes, {n - scenes} stamps) are captioned from "
           f"a datastore of {int(d.get('datastore captions', 0))} training captions, "
           f"{int(d.get('retrieved per image (k)', 0))} retrieved per image; {checks[0]} and {checks[1]}.{note}"]
    if "augmentation: captions added" in d:
        out.append(f"Augmentation: `recap` captioned {int(d.get('augmentation: SCST images captioned', 0))} SCST "
                   f"images (not test images); {int(d['augmentation: captions added'])} of those captions scored "
                   f"above the RefaCLIP-S threshold {d.get('augmentation: RefaCLIP-S threshold', float('nan')):.3f} "
                   f"and were added to the datastore for `recap-aug`.")
    return out


def _recap_diff_sentence(g: pd.DataFrame, a: str, b: str, question: str) -> str:
    n = int(g["n"].max()) if "n" in g and g["n"].notna().any() else 0
    sig = g[g["p_holm"].notna() & (g["p_holm"] <= ALPHA)]
    up = [f"{recap_metric_label(r['metric'])} {r['value']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]"
          for _, r in sig.iterrows() if r["value"] > 0]
    down = [f"{recap_metric_label(r['metric'])} {r['value']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]"
            for _, r in sig.iterrows() if r["value"] < 0]
    rest = len(g) - len(up) - len(down)
    cider = g[g["metric"] == "cider-d"]
    head = ""
    if len(cider):
        c = cider.iloc[0]
        head = (f"CIDEr-D {c['value_a']:.3f} against {c['value_b']:.3f}, difference {c['value']:+.3f} "
                f"[{c['low']:+.3f}, {c['high']:+.3f}] (corrected {fmt_p(c['p_holm'])}); ")
    if not up and not down:
        verdict = f"no difference holds after Holm on any of the {len(g)} metrics"
    else:
        parts = ([f"`{a}` is higher on {', '.join(up)}"] if up else []) + \
                ([f"{'lower' if up else f'`{a}` is lower'} on {', '.join(down)}"] if down else [])
        verdict = f"{'; '.join(parts)} (holding after Holm)" + (
            f", and not distinguishable from `{b}` on the other {rest} of {len(g)} metrics" if rest else
            f", i.e. on all {len(g)} metrics")
    return f"`{a} − {b}` ({question}), paired over {n} images: {head}{verdict}."


def recap_difference_sentences(rows: pd.DataFrame, contrasts=None) -> list[str]:
    """One sentence per contrast (``a − b``, default :data:`analysis.captioning.retrieval.CONTRASTS` plus any
    other contrast in the rows): CIDEr-D of both and their difference, then the metrics where the difference
    holds after Holm (up or down) and how many are not distinguishable; a contrast with no rows says which
    system is missing."""
    from analysis.captioning.retrieval import CONTRASTS

    d = _recap(rows, "difference")
    summary = _recap(rows, "summary")
    have = set(summary["system"]) if len(summary) else set()
    expected = list(contrasts or CONTRASTS)
    if len(d):
        for (a, b), g in d.groupby(["system", "baseline"], sort=False):
            if (a, b) not in {(x[0], x[1]) for x in expected}:
                expected.append((a, b, str(g["question"].iloc[0])))
    out = []
    for a, b, question in expected:
        g = d[(d["system"] == a) & (d["baseline"] == b)] if len(d) else d
        if g.empty:
            missing = [x for x in (a, b) if x not in have]
            why = (f"`{'` and `'.join(missing)}` {'has' if len(missing) == 1 else 'have'} no captions in this run"
                   if missing else "no metric has values for both")
            out.append(f"No `{a} − {b}` comparison ({question}): {why}.")
            continue
        out.append(_recap_diff_sentence(g, a, b, question))
    return out


def _recap_mean(summary: pd.DataFrame, system: str, metric: str):
    r = summary[(summary["system"] == system) & (summary["metric"] == metric)]
    return None if r.empty else float(r["value"].iloc[0])


def recap_construction_sentences(rows: pd.DataFrame) -> list[str]:
    """Why aCLIP-S / RefaCLIP-S favour aligned retrieval by construction (and CLIP-S unaligned retrieval),
    with the nearest-neighbour systems' means as the evidence; says so when a system or metric is missing."""
    summary = _recap(rows, "summary")
    ac = [m for m in dict.fromkeys(summary["metric"]) if str(m).startswith("aclip-s:")] if len(summary) else []
    cs = [m for m in dict.fromkeys(summary["metric"]) if str(m).startswith("clip-s:")] if len(summary) else []
    if not ac or not cs:
        return ["The rows have no aCLIP-S or no CLIP-S means, so the by-construction advantage of each retrieval "
                "under its own score is not quantified here."]
    vals = {(sy, m): _recap_mean(summary, sy, m) for sy in ("nn", "nn-aligned") for m in (ac[0], cs[0])}
    if any(v is None for v in vals.values()):
        return ["`nn` or `nn-aligned` is missing, so the by-construction advantage of each retrieval under its own "
                "score is not quantified here; it holds all the same: aligned retrieval ranks the datastore by "
                "aCLIP-S and unaligned retrieval by CLIP-S."]
    d = _recap_data(rows)
    m = int(d.get("candidates per image", 1) or 1)
    rerank = (f" With {m} candidates per image, `recap` also keeps the candidate with the highest aCLIP-S, which "
              "favours it once more on that metric." if m > 1 else "")
    return [f"By construction, aligned retrieval returns the datastore caption with the highest aCLIP-S (the same "
            f"map and the same \"A photo depicts \" prefix), and unaligned retrieval the one with the highest CLIP-S: "
            f"`nn-aligned` has {recap_metric_label(ac[0])} {vals[('nn-aligned', ac[0])]:.3f} against "
            f"{vals[('nn', ac[0])]:.3f} for `nn`, and `nn` has {recap_metric_label(cs[0])} {vals[('nn', cs[0])]:.3f} "
            f"against {vals[('nn-aligned', cs[0])]:.3f} for `nn-aligned`. The aligned metrics therefore favour the "
            f"systems built on aligned retrieval (`nn-aligned`, `recap`) by construction, and CLIP-S the unaligned "
            f"ones: a difference between them on these metrics is not independent evidence of better captions; "
            f"the reference-based n-gram metrics and sg-f1 are.{rerank}"]


def recap_retrieval_sentences(rows: pd.DataFrame) -> list[str]:
    """How much the map changes what is retrieved: the share of images whose top-1 caption is the same aligned
    and unaligned (Wilson interval) and the mean share of the top-k both return."""
    r = _recap(rows, "retrieval")
    top1 = r[r["metric"] == "same top-1 caption as unaligned retrieval"] if len(r) else r
    topk = r[r["metric"] == "share of the top-k shared with unaligned retrieval"] if len(r) else r
    if top1.empty:
        return ["The rows do not compare aligned with unaligned retrieval, so how much the map changes what is "
                "retrieved is not stated."]
    a = top1.iloc[0]
    k = int(_recap_data(rows).get("retrieved per image (k)", 0) or 0)
    tail = ""
    if len(topk):
        b = topk.iloc[0]
        tail = (f", and the two share {b['value']:.0%} [{b['low']:.0%}, {b['high']:.0%}] of their top-"
                f"{k or 'k'} captions")
    return [f"Aligned and unaligned retrieval return the same top-1 caption for {a['value']:.0%} "
            f"[{a['low']:.0%}, {a['high']:.0%}] of {int(a['n'])} images{tail}: `nn-aligned − nn` and `recap − lm` "
            f"can differ only through the captions the map changes."]


def recap_copy_sentences(rows: pd.DataFrame) -> list[str]:
    """Per LM system: how often its caption is one of its retrieved captions verbatim (Wilson interval) and how
    often the top one; says so when no LM system ran."""
    c = _recap(rows, "copying")
    if c.empty:
        return ["No language-model system ran, so nothing says how much the LM copies from the retrieved captions."]
    out = []
    for sy, g in c.groupby("system", sort=False):
        cp = g[g["metric"] == "copies a retrieved caption"]
        top = g[g["metric"] == "equals the top retrieved caption"]
        fb = g[g["metric"].astype(str).str.startswith("fallback")]
        if cp.empty:
            continue
        r = cp.iloc[0]
        extra = f" (the top-ranked one in {top['value'].iloc[0]:.0%})" if len(top) else ""
        fall = (f"; {int(round(fb['value'].iloc[0] * fb['n'].iloc[0]))} empty output(s) fell back to the top caption"
                if len(fb) and fb["value"].iloc[0] > 0 else "")
        out.append(f"`{sy}` writes one of its retrieved captions verbatim for {r['value']:.0%} "
                   f"[{r['low']:.0%}, {r['high']:.0%}] of {int(r['n'])} images{extra}{fall}.")
    return out


def recap_correction_sentences(rows: pd.DataFrame) -> list[str]:
    """The test families (one per contrast) with their sizes, the resamples, and the one-seed caveat."""
    d = _recap(rows, "difference")
    if d.empty or "p" not in d:
        return ["No paired difference was tested."]
    fams = d.dropna(subset=["p"]).groupby("test_family", sort=False).size()
    if fams.empty:
        return ["No paired difference has a p-value."]
    b = int(_recap_data(rows).get("bootstrap resamples", 0) or 0)
    floor = ""
    if b and any(2 * m / (b + 1) > ALPHA for m in fams):
        floor = (f" With {b} resamples the smallest bootstrap p is 2/(B+1), so Holm over {int(fams.max())} tests "
                 "cannot reach α here: no difference can hold in this run.")
    text = ", ".join(f"*{f}* ({m} tests)" for f, m in fams.items())
    return [f"Intervals are percentile bootstrap intervals over images (one seed: they are conditional on this XE "
            f"captioner, this map and this datastore); p-values are two-sided bootstrap p"
            f"{f' ({b} resamples)' if b else ''}, Holm-corrected within each contrast's family of metrics: {text}; "
            f"a difference holds at α = {ALPHA} after that correction.{floor}"]


def recap_caption_sentences(rows: pd.DataFrame) -> list[str]:
    """Every computed sentence of the *Realignment: captions* page, in order."""
    return [*recap_setup_sentences(rows), *recap_retrieval_sentences(rows), *recap_difference_sentences(rows),
            *recap_construction_sentences(rows), *recap_copy_sentences(rows), *recap_correction_sentences(rows)]


# ----------------------------------------------------------------------------- realignment: the speed claim
def _speed_secs(s: float) -> str:
    """``25.3 ms`` below a second, ``3.32 s`` above, ``n/a`` for NaN."""
    return "n/a" if s != s else f"{s * 1000:.3g} ms" if s < 1 else f"{s:.3g} s"


def _speed_times(r: float, bound: bool = False) -> str:
    """``617×`` (``1,234×``), ``42×``, ``4.3×``; ``≥ 617×`` for a lower bound; ``n/a`` for NaN."""
    if r != r:
        return "n/a"
    txt = f"{r:,.0f}×" if r >= 10 else f"{r:.2g}×"
    return ("≥ " if bound else "") + txt


def _speed_fact(rows, approach: str, metric: str):
    """One deterministic value of the speed page's rows (None when absent)."""
    if rows is None or not len(rows) or "approach" not in rows:
        return None
    r = rows[(rows["approach"] == approach) & (rows["metric"] == metric)]
    return float(r["value"].iloc[0]) if len(r) else None


def _speed_int(x) -> str:
    return "?" if x is None or x != x else f"{int(x):,}"


def realign_speed_sentences(table: pd.DataFrame, rows: pd.DataFrame | None = None, *,
                            claim: float | None = None) -> list[str]:
    """The *Realignment, speed* page's sentences from its measurement table (:func:`analysis.mappers.run_speed`'s
    frame, the ``realign-speed.timings.csv`` file) and its deterministic ``rows``
    (:func:`analysis.mappers.speed_rows`; optional: budgets, repeats and the captioner's facts come from there):
    the closed forms' times and R@1; the range of the gradient mappers' ratios to the reference; whether each
    reached the reference's R@1 (and its own form's); the captioner's ratio, or that it is missing; the computed
    verdict on "up to ``claim`` times faster" (:func:`analysis.mappers.speed_verdict`); what a 0.01 tolerance
    changes (:func:`analysis.mappers.changed_conclusions`) given the R@1 step of one image of the stopping set.
    Each R@1 names its split: with a separate stopping set (the page: "stopped on val R@1; test R@1
    reported") the targets and stops are on val and the reported R@1 on test; a table without one (columns
    ``stopping_split``, ``stop_i2t_R@1``) stopped on the set it reports."""
    from analysis import mappers

    claim = float(claim or mappers.CLAIM)
    if table is None or not len(table):
        return ["No speed measurement was run."]
    t = mappers.variant_of(table, targets="reference")
    closed = t[t["kind"] == "closed-form"]
    if closed.empty:
        return ["No closed-form fit was timed, so no ratio to it can be stated."]
    ref_name = str(t["reference"].iloc[0]) if "reference" in t else str(closed["approach"].iloc[0])
    ref = closed[closed["approach"] == ref_name].iloc[0] if (closed["approach"] == ref_name).any() else closed.iloc[0]
    label = str(t["label"].iloc[0]) if "label" in t else str(t["model"].iloc[0]) if "model" in t else "the encoder"
    n_fit, n_eval = int(ref.get("n_fit", 0)), int(ref.get("n_eval", 0))
    test, stop = mappers._splits(t)
    separate = "stop_i2t_R@1" in t and "stopping_split" in t and stop != test
    if not separate:  # stopped on the reported set (a table from before the two were separated says "test")
        test = stop = test if "split" in t else "test"
    n_stop = int(ref.get("n_stop", n_eval)) if separate else n_eval
    stop_col = "stop_i2t_R@1" if separate else "i2t_R@1"
    threads = int(ref["threads"]) if "threads" in ref and ref["threads"] == ref["threads"] else None
    thr = f", {threads} CPU thread{'s' if threads != 1 else ''}" if threads else ""
    repeats = _speed_fact(rows, "closed-form", "repeats")
    med = f" (median of {int(repeats)} fits)" if repeats else ""
    others = closed[closed["approach"] != ref["approach"]]
    oth = ("; " + ", ".join(f"`{r.approach}` took {_speed_times(r.ratio)}" for r in others.itertuples())
           + f" its time") if len(others) else ""
    r1s = ", ".join(f"`{a}` {v:.3f}" for a, v in zip(closed["approach"], closed["i2t_R@1"]))
    stop_r1s = ", ".join(f"`{a}` {v:.3f}" for a, v in zip(closed["approach"], closed[stop_col]))
    held = (f"Image→text R@1 on the {n_eval} {test} images (reported): {r1s}; on the {n_stop} {stop} images "
            f"(where the gradient-trained mappers stop; {stop} R@1 sets their targets): {stop_r1s}." if separate else
            f"Held-out image→text R@1 on {n_eval} {test} images: {r1s}.")
    out = [f"On {n_fit:,} fitting pairs ({int(ref.get('dim_x', 0))}-d image → {int(ref.get('dim_y', 0))}-d caption "
           f"embeddings of `{label}`{thr}), `{ref['approach']}` (ReCap's map) fitted in "
           f"{_speed_secs(float(ref['train_seconds']))}{med}{oth}. {held}"]
    target = float(ref[stop_col])
    g = t[t["kind"] == "gradient"]
    if g.empty:
        out.append("No gradient-trained mapper was run, so the closed form is compared with nothing trained by "
                   "gradient descent here.")
    else:
        bounds = [mappers._flag(x) is not True for x in g["reached_target"]]
        each = ", ".join(f"`{a}` {_speed_times(r, b)}" for a, r, b in zip(g["approach"], g["ratio"], bounds))
        lo, hi = g["ratio"].min(), g["ratio"].max()
        me = _speed_fact(rows, str(g["approach"].iloc[0]), "max_epochs")
        ms = _speed_fact(rows, str(g["approach"].iloc[0]), "max_seconds")
        budget = (f" ({_speed_int(me)} epochs or {ms:g} s each)" if me is not None and ms is not None else "")
        span = (f"{_speed_times(lo)} to {_speed_times(hi)}" if len(g) > 1 else _speed_times(lo))
        until = (f"their {stop} image→text R@1 reached `{ref['approach']}`'s {stop} R@1 {target:.3f} (stopped on "
                 f"{stop} R@1; {test} R@1 reported)" if separate else
                 f"their held-out image→text R@1 reached `{ref['approach']}`'s {target:.3f}")
        out.append(f"Trained by Adam until {until} "
                   f"or their budget ran out{budget}, the gradient-trained mappers took {span} "
                   f"`{ref['approach']}`'s fit time ({each}"
                   + ("; ≥ marks a mapper stopped by its budget: a lower bound" if any(bounds) else "") + ").")
        own = mappers.variant_of(table, targets="own-form")
        own = own[own["kind"] == "gradient"] if len(own) and "targets" in table else own.iloc[0:0]
        parts = []
        for r in g.itertuples():
            if mappers._flag(r.reached_target):
                parts.append(f"`{r.approach}` reached it after {int(r.steps)} steps ({r.epochs:.1f} epochs, "
                             f"{_speed_secs(r.train_seconds)})")
                continue
            r1_end = float(g.loc[r.Index, "i2t_R@1"])
            end = (f"{test} R@1 {r1_end:.3f} and {stop} R@1 {float(g.loc[r.Index, stop_col]):.3f} at the end"
                   if separate else f"held-out R@1 {r1_end:.3f} at the end")
            why = f"`{r.approach}` did not (stopped by {r.stopped_by}, {end})"
            o = own[own["approach"] == r.approach]
            if len(o) and o["target_from"].iloc[0] != ref["approach"]:
                src = str(o["target_from"].iloc[0])
                sv = closed[closed["approach"] == src][stop_col]
                if len(sv) and float(sv.iloc[0]) < target:
                    why += (f"; `{src}`, which minimises the same loss in closed form, scores "
                            f"{float(sv.iloc[0]):.3f} on these {stop} images: below the target")
            parts.append(why)
        out.append("Of the gradient-trained mappers, " + "; ".join(parts) + ".")
        if len(own):
            differ = own[own["target_from"] != ref["approach"]]
            same = own[own["target_from"] == ref["approach"]]
            if len(differ):
                bits = []
                for r in differ.itertuples():
                    did = (f"reached it after {int(r.steps)} steps, {_speed_times(r.ratio)} `{ref['approach']}`'s time"
                           if mappers._flag(r.reached_target) else
                           f"did not reach it (stopped by {r.stopped_by}; {_speed_times(r.ratio, True)})")
                    bits.append(f"`{r.approach}` against `{r.target_from}`'s {stop + ' ' if separate else ''}R@1 "
                                f"{r.target_r1:.3f} {did}")
                keep = (f" For {names_list(list(same['approach']))} the own-form target is `{ref['approach']}`'s, "
                        "as above." if len(same) else "")
                out.append("Against the closed form of its own form: " + "; ".join(bits) + "." + keep)
    cap = t[t["kind"] == "captioner"]
    if cap.empty:
        out.append("No XE captioner training time was available (no checkpoint was read), so the comparison with "
                   "a lightweight captioner is missing here.")
    else:
        c = cap.iloc[0]
        steps, n_img, n_refs = (_speed_fact(rows, mappers.CAPTIONER, m) for m in ("steps", "n_images", "n_refs"))
        cthr = _speed_fact(rows, mappers.CAPTIONER, "threads")
        same = ", the same pairs the maps are fitted on" if n_refs is not None and n_refs == n_fit else ""
        facts = (f" ({_speed_int(steps)} steps on {_speed_int(n_img)} training images with {_speed_int(n_refs)} "
                 f"captions{same}"
                 f"{f', {int(cthr)} threads' if cthr else ''})" if steps is not None else "")
        out.append(f"The probe's XE captioner, a ClipCap-style lightweight captioner, trained in "
                   f"{_speed_secs(float(c['train_seconds']))}{facts}: {_speed_times(float(c['ratio']))} "
                   f"`{ref['approach']}`'s fit. Its seconds are read from its checkpoint, not timed in this run; it "
                   "learns from EfficientNet-Lite0 image features rather than these embeddings, and it makes captions, "
                   "not a map, so the ratio compares training cost only.")
    v = mappers.speed_verdict(table, claim=claim)
    quote = f"“Trained up to {claim:,.0f} times faster than existing lightweight methods” (ReCap)"
    if v["verdict"] == "not testable":
        why = ("no lightweight approach was measured" if not v["gradient"] and v["captioner_ratio"] is None else
               "the reference time is missing or zero" if not v["reference_seconds"] > 0 else
               "every ratio is a lower bound at or below 1")
        out.append(f"{quote} is {v['phrase']}: {why}.")
    else:
        gr = v["gradient"]
        bits = []
        if gr:
            alone = mappers.speed_verdict(table, claim=claim, kinds=("gradient",))
            each = ", ".join(f"`{a}` {_speed_times(r, a in v['bounds'])}" for a, r in gr.items())
            bits.append(f"against the gradient-trained mappers alone ({each}) it {alone['phrase']}")
        bits.append(f"against the XE captioner {_speed_times(v['captioner_ratio'])}" if v["captioner_ratio"] is not None
                    else "the XE captioner is missing")
        short = f", short of {claim:,.0f}×" if v["verdict"].startswith("direction") else ""
        out.append(f"{quote} {v['phrase']}: the largest ratio to `{v['reference']}`'s fit is "
                   f"{_speed_times(v['max_ratio'], v['max_is_bound'])} (`{v['max_approach']}`"
                   f"{', a lower bound' if v['max_is_bound'] else ''}{short}); " + "; ".join(bits) + ".")
    tol = sorted({float(x) for x in table["tolerance"] if float(x) > 0}) if "tolerance" in table else []
    if n_stop:
        hit = f"With {n_stop} {stop} images one hit moves R@1 by {1 / n_stop:.3f}"
        if tol:
            ch = mappers.changed_conclusions(table, tolerance=tol[0], claim=claim)
            out.append(f"{hit}; with a {tol[0]:g} tolerance on the targets (R@1 − {tol[0]:g}) "
                       + ("nothing concluded above changes." if not ch else "; ".join(ch) + "."))
        else:
            out.append(hit + ".")
    out.append("Each gradient time is one run of one seed and the closed forms' the median of a few fits, on the "
               "thread count stated, with the held-out checks off every clock: the ratios carry the machine's timing "
               "noise, which is why they are kept out of the result rows (see the measurement table).")
    return out


# ----------------------------------------------------------------------------- realignment: metrics and judgements
def _tau_ci(r) -> str:
    """``63.4 [58.5, 68.5]`` (τ × 100) or ``n/a``."""
    v, lo, hi = (float(r.get(k, float("nan"))) for k in ("value", "low", "high"))
    if v != v:
        return "n/a"
    return f"{v:.1f} [{lo:.1f}, {hi:.1f}]" if lo == lo and hi == hi else f"{v:.1f}"


def _kind_of(r) -> str:
    return "rule-made, not human judgements" if r.get("judgement_kind") == "rule-made" else "human judgements"


def _unavailable(note) -> bool:
    return isinstance(note, str) and (note.startswith("data unavailable") or note.startswith("not available here"))


def _how(note: str) -> str:
    return note.removeprefix("data unavailable: ").removeprefix("not available here: ")


def realign_tau_sentences(rows: pd.DataFrame) -> list[str]:
    """Per judgement set of the ``correlation`` rows: the highest and lowest τ × 100 with intervals (and the
    text-only ``blind`` beside them), how many metrics have no value there; for a set without data here, that it is
    not available and how to provide it (no number); the published anchors beside real-data rows, with source."""
    r = rows[rows["run"] == "correlation"] if rows is not None and len(rows) and "run" in rows else pd.DataFrame()
    if r.empty:
        return ["No metric was correlated with any judgement set."]
    out = []
    for dataset, g in r.groupby("dataset", sort=False):
        first = g.iloc[0]
        if g["value"].isna().all() and g["note"].map(_unavailable).all():
            out.append(f"`{dataset}` ({_kind_of(first)}) is not available here, so no number is shown for it: "
                       f"{_how(first['note'])}")
            continue
        ok = g[g["value"].notna()]
        if ok.empty:
            out.append(f"On `{dataset}` ({_kind_of(first)}) no metric has a τ: {first['note'] or 'no value'}.")
            continue
        hi, lo = ok.loc[ok["value"].idxmax()], ok.loc[ok["value"].idxmin()]
        blind = ok[ok["model"] == "blind"]
        extra = (f"; the text-only `{blind.iloc[0]['label']}` {_tau_ci(blind.iloc[0])}" if len(blind)
                 and blind.index[0] not in (hi.name, lo.name) else "")
        na = len(g) - len(ok)
        missing = f"; {na} metric{'s have' if na != 1 else ' has'} no value here (see the notes)" if na else ""
        out.append(f"On `{dataset}` ({_kind_of(first)}; τ{first['variant']} × 100 over {int(hi['n_rows'])} rows of "
                   f"{int(hi['n_images'])} images, 95% intervals clustered over images): the highest τ is "
                   f"`{hi['label']}` at {_tau_ci(hi)} and the lowest `{lo['label']}` at {_tau_ci(lo)}{extra}{missing}.")
        if "published" in g:
            pub = g[g["published"].notna() & g["value"].notna()]
            if len(pub):
                pairs = "; ".join(f"`{p['label']}` {p['value']:.1f} here, {p['published']:.1f} published"
                                  for _, p in pub.iterrows())
                out.append(f"Published anchors on `{dataset}` ({pub.iloc[0]['published_source']}), beside this "
                           f"run on the whole set: {pairs}.")
    return out


def realign_difference_sentences(rows: pd.DataFrame) -> list[str]:
    """The paired comparisons (``correlation-difference`` rows): per pair and set with data, Δτ × 100 with its
    paired interval, both τ and the Holm-corrected p with a verdict; the sets without data in one sentence; the
    pairs that could not be compared (a missing aligned or unaligned metric) with their reason; the family."""
    d = rows[rows["run"] == "correlation-difference"] if rows is not None and len(rows) and "run" in rows \
        else pd.DataFrame()
    if d.empty:
        return ["No aligned metric was paired with its unaligned counterpart in this run, so ReCap's comparison "
                "is not made here."]
    out, away = [], []
    for _, r in d.iterrows():
        where = f"`{r['dataset']}` ({_kind_of(r)})"
        if r["value"] == r["value"]:
            sig = r["p_holm"] == r["p_holm"] and r["p_holm"] <= ALPHA
            verdict = (("the aligned metric correlates higher" if r["value"] > 0 else
                        "the aligned metric correlates lower") if sig else
                       f"no difference detected at α = {ALPHA} after Holm")
            out.append(f"{r['label']} on {where}: Δτ × 100 = {r['value']:+.1f} [{r['low']:+.1f}, {r['high']:+.1f}] "
                       f"(τ {r['tau_aligned']:.1f} aligned vs {r['tau_baseline']:.1f} unaligned on the same "
                       f"{int(r['n_rows'])} rows of {int(r['n_images'])} images), corrected {fmt_p(r['p_holm'])}: "
                       f"{verdict}.")
        elif _unavailable(r["note"]):
            if r["dataset"] not in away:
                away.append(r["dataset"])
        else:
            out.append(f"{r['label']} on {where}: {r['note'] or 'not compared'}.")
    if away:
        out.append(f"On {names_list(away)} the paired comparisons are not made: their data are not on this machine "
                   "(the judgement-set table says how to provide them).")
    n = int(d["p"].notna().sum())
    if n:
        out.append(f"Each Δτ interval is a paired percentile bootstrap clustered over images (images resampled once, "
                   f"both τ on the same resample); p is the two-sided bootstrap p of Δτ = 0, Holm-corrected over the "
                   f"family of {n} comparison{'s' if n != 1 else ''} (pairs × judgement sets with data).")
    return out


def realign_claim_sentences(rows: pd.DataFrame) -> list[str]:
    """ReCap's claim "aligned metrics correlate better with human judgement", from the paired rows: holds / does
    not hold on each human set with data, or not testable here without one; what the rule-made sets add."""
    d = rows[rows["run"] == "correlation-difference"] if rows is not None and len(rows) and "run" in rows \
        else pd.DataFrame()
    done = d[d["value"].notna()] if len(d) else d
    human = done[done["judgement_kind"] == "human"] if len(done) else done
    rule = done[done["judgement_kind"] == "rule-made"] if len(done) else done

    def tally(g) -> str:
        up = int(((g["p_holm"] <= ALPHA) & (g["value"] > 0)).sum())
        down = int(((g["p_holm"] <= ALPHA) & (g["value"] < 0)).sum())
        return (f"{up} of {len(g)} comparison{'s' if len(g) != 1 else ''} significantly higher for the aligned "
                f"metric and {down} significantly lower (Holm, α = {ALPHA})")

    if len(human):
        verdict = ("holds here" if ((human["p_holm"] <= ALPHA) & (human["value"] > 0)).all() else
                   "does not hold here" if not ((human["p_holm"] <= ALPHA) & (human["value"] > 0)).any() else
                   "holds on some human sets only")
        out = [f"ReCap's claim that the aligned metrics correlate better with human judgement {verdict}: "
               f"{tally(human)} on {names_list(list(dict.fromkeys(human['dataset'])))}."]
    else:
        out = ["ReCap's claim that the aligned metrics correlate better with human judgement is not testable here: "
               "no human judgement set has data on this machine."]
    if len(rule):
        out.append(f"On the rule-made sets ({names_list(list(dict.fromkeys(rule['dataset'])))}; rule-made, not human "
                   f"judgements) {tally(rule)}: evidence about ordering rule-made caption corruptions, not about "
                   "human judgement.")
    return out


def realign_noise_sentences(rows: pd.DataFrame) -> list[str]:
    """Per metric of the ``noise-robustness`` rows: τ × 100 clean and at the largest σ of each noise kind, and
    the mean score of the true captions (top rung) at both; where the embedding noise entered."""
    from analysis.correlation import STAGE_TEXT

    n = rows[rows["run"] == "noise-robustness"] if rows is not None and len(rows) and "run" in rows \
        else pd.DataFrame()
    if n.empty:
        return ["No noise-robustness sweep was run."]
    out = []
    for (metric, label), g in n.groupby(["metric", "label"], sort=False):
        parts = []
        for noise, h in g.groupby("noise", sort=False):
            h = h[h["value"].notna()].sort_values("sigma")
            if len(h) < 2:
                continue
            a, b = h.iloc[0], h.iloc[-1]
            parts.append(f"under {noise} noise τ × 100 goes from {_tau_ci(a)} at σ = {a['sigma']:g} to {_tau_ci(b)} "
                         f"at σ = {b['sigma']:g} (true captions' mean score {a['top_mean']:.2f} → {b['top_mean']:.2f})")
        if parts:
            out.append(f"`{label}` on `{g.iloc[0]['dataset']}` ({_kind_of(g.iloc[0])}): " + "; ".join(parts) + ".")
        else:
            out.append(f"`{label}`: no noise result ({g.iloc[0]['note'] or 'no value'}).")
    stages = [s for s in dict.fromkeys(n.get("embedding_stage", pd.Series(dtype=str)).dropna()) if s]
    if stages:
        same = (", so an aligned metric and its unaligned counterpart receive the same perturbed encoder output"
                if stages == ["encoder"] else "")
        out.append("Embedding noise was added " + " and ".join(STAGE_TEXT.get(s, s) for s in stages) + same + ".")
    return out


def realign_metrics_sentences(rows: pd.DataFrame) -> list[str]:
    """Every sentence of the Realignment metrics page, from its rows."""
    return (realign_tau_sentences(rows) + realign_difference_sentences(rows) + realign_claim_sentences(rows)
            + realign_noise_sentences(rows))


def realignment_change_sentences(rows: pd.DataFrame) -> list[str]:
    """The whole family of paired before/after tests (every map, z-scoring, setting, direction and k; in-domain
    and transfer pooled): how many are significant after Holm's correction, and each of them, gains and
    losses alike (the retrieval sentences name only the best map)."""
    c = rows[(rows["stage"] == "change") & rows["fold"].astype(str).isin(["", "pooled"])] \
        if rows is not None and len(rows) and "stage" in rows else pd.DataFrame()
    if c.empty:
        return ["No paired before/after test of retrieval is in these rows."]
    m = len(c)
    sig = c[c["p_holm"].notna() & (c["p_holm"] <= ALPHA)]
    scope = (f"{m} paired tests of a change in R@k (every map and setting, both directions; exact McNemar, "
             "Holm-corrected over all of them)")
    if sig.empty:
        return [f"None of the {m} paired tests of a change in R@k (every map and setting, both directions; exact "
                f"McNemar, Holm-corrected over all of them) is significant at α = {ALPHA}: no map changes "
                "retrieval detectably here."]
    names = {"i2t": "image→text", "t2i": "text→image"}
    items = []
    for _, r in sig.sort_values("value", kind="stable").iterrows():
        d, k = str(r["metric"]).split("_R@")
        items.append(f"`{_map_label(r['method'], r['standardize'])}` {r['setting']} {names.get(d, d)} R@{k} "
                     f"{r['value']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] (corrected {fmt_p(r['p_holm'])})")
    gains, losses = int((sig["value"] > 0).sum()), int((sig["value"] < 0).sum())
    return [f"Of the {scope}, {len(sig)} {'is' if len(sig) == 1 else 'are'} significant at α = {ALPHA}: "
            f"{gains} gain{'s' if gains != 1 else ''} and {losses} loss{'es' if losses != 1 else ''}: "
            + "; ".join(items) + "."]


def realign_findings_sentences(verdicts: pd.DataFrame) -> list[str]:
    """One sentence per ReCap claim of the Realignment findings page: how many of its settings hold, do not hold
    here, are inconclusive or not testable offline, naming them; says so when no verdict was computed."""
    if verdicts is None or verdicts.empty:
        return ["No verdict was computed: none of the Realignment pages' tables was found in this run."]
    out = []
    for claim, g in verdicts.groupby("claim", sort=False):
        parts = []
        for verdict in ("holds", "does not hold here", "inconclusive", "not testable offline"):
            h = g[g["verdict"] == verdict]
            if len(h):
                where = ", ".join(s for s in h["setting"] if s)
                parts.append(f"**{verdict}**" + (f" ({where})" if where else ""))
        source = g["source_of_claim"].iloc[0]
        out.append(f"“{claim}” ({source}): " + "; ".join(parts) + ".")
    missing = verdicts[verdicts["reason"].str.contains("has not been run", na=False)]
    if len(missing):
        out.append("Not run in this build: " + ", ".join(sorted(set(missing["page"])))
                   + " (their claims are marked not testable until the page runs).")
    return out


# ----------------------------------------------------------------------------- the bridge (realign-bridge)
def bridge_sentences(rows: pd.DataFrame) -> list[str]:
    """The bridge page's sentences (:mod:`analysis.bridge`): the verdict with its reason; whether each SCST run
    raised its own reward on the test images; how often the two captioners wrote the same caption; the findings'
    verdicts side by side; reward-guided decoding's identical-caption shares. A missing part is named."""
    from analysis import findings

    out = []
    v = _of(rows, "verdict")
    if v.empty:
        out.append("No bridge verdict was computed in this run.")
    else:
        r = v.iloc[0]
        out.append(f"Does realigning the reward's image side change what SCST teaches the captioner? "
                   f"`{r['system']}` against `{r['baseline']}`: **{r['verdict']}**: {r['reason']}.")
    per_seed = _of(rows, "identical captions")
    seeds = sorted({int(x) for x in per_seed["seed"] if x != -1}) if len(per_seed) else []
    if len(seeds) == 1:
        out.append(f"Both captioners trained with the one SCST seed {seeds[0]}: training is deterministic, so they drew "
                   "the same random numbers and differ only through the reward; a difference is the map's doing in "
                   "that run, but whether its size holds across seeds is not measured here.")
    elif seeds:
        out.append(f"Both captioners trained with SCST seeds {', '.join(map(str, seeds))}; the intervals draw seeds "
                   "as well as images.")
    checks = _of(rows, "reward raised")
    for _, c in checks.iterrows():
        if c.get("status") != "ok":
            out.append(f"Whether SCST raised `{c['system']}`'s own reward could not be checked (a system or the XE "
                       "baseline is missing).")
            continue
        raised = "raised" if _held(c.get("raised")) else "did not raise"
        out.append(f"SCST {raised} `{c['system']}`'s own reward on the test images ({c['measure']} minus XE "
                   f"{fmt_interval(c['value'], c['low'], c['high'])}).")
    same = _of(rows, "identical captions", seed=-1)
    for _, r in same.iterrows():
        if r["n"]:
            out.append(f"The two captioners wrote the same caption for {r['value']:.0%} of the test images "
                       f"(Wilson 95% interval {r['low']:.0%} to {r['high']:.0%}; {int(r['n'])} image × seed pairs).")
    f = _of(rows, "finding")
    if len(f):
        ver = findings.table_verdicts(f, checks)  # a system whose reward was not raised: not testable (as on the page)
        systems = list(dict.fromkeys(ver["system"]))
        for fid, g in ver.groupby("finding", sort=True):
            cells = {s: g.loc[g.system == s, "verdict"].iloc[0] for s in systems if (g.system == s).any()}
            if len(cells) < 2:
                have = "; ".join(f"`{s}`: {x}" for s, x in cells.items())
                out.append(f"{fid}: only one system was tested ({have}).")
                continue
            agree = len(set(cells.values())) == 1
            out.append(f"{fid}: " + "; ".join(f"`{s}` **{x}**" for s, x in cells.items())
                       + (" (the same verdict)." if agree else " (the verdicts differ)."))
    else:
        out.append("The findings F1–F3 were not tested in this run.")
    g = _of(rows, "guided", measure="identical captions")
    if len(g):
        parts = [f"prior weight {fmt_num(r['weight'])}: {r['value']:.0%} of {int(r['n'])} images" for _, r in
                 g.sort_values("weight").iterrows()]
        out.append("Reward-guided decoding over the XE prior (no training) picked the same caption under both rewards "
                   "for " + "; ".join(parts) + ".")
    return out


# ----------------------------------------------------------------------------- the findings landing page
def landing_effect(r) -> str:
    """``"relation correctness falls vs `xe`: −0.12 [−0.20, −0.05], Holm p 0.003"`` from a landing row; ``""`` when
    the row has no effect (a verdict decided on a page's own grounds, e.g. wall times)."""
    v = r.get("value", float("nan"))
    if v != v:
        return ""
    test = str(r.get("test") or "")
    base = f" vs {r['baseline']}" if r.get("baseline") else ""
    ci = fmt_interval(v, r.get("low", float("nan")), r.get("high", float("nan")))
    p = r.get("p_holm", float("nan"))
    return f"{test}{base}: {ci}" + (f", Holm p {fmt_p(p)}" if p == p else "")


def landing_sentences(table: pd.DataFrame, missing: list[str]) -> list[str]:
    """The landing page's summary: per finding of the probe, each system's verdict; per ReCap claim (and the
    bridge), its verdicts; the pages not run in this build. Every word comes from ``table``
    (:func:`analysis.landing.landing_table`)."""
    out = []
    if table is None or table.empty:
        out.append("No finding was computed: neither findings page has been run in this build.")
    else:
        probe = table[table["page"] == "probe-findings"]
        for fid, g in probe.groupby("finding", sort=True):
            cells = "; ".join(f"`{r['system']}` **{r['verdict']}**" for _, r in g.iterrows())
            out.append(f"The probe's {fid} ({g['claim'].iloc[0]}): {cells}.")
        other = table[table["page"] != "probe-findings"]
        for claim, g in other.groupby("claim", sort=False):
            cells = "; ".join(f"**{r['verdict']}**" + (f" ({r['system']})" if r["system"] else "")
                              for _, r in g.iterrows())
            out.append(f"“{claim}” ({g['paper'].iloc[0]}): {cells}.")
    if missing:
        out.append("Not run in this build: " + ", ".join(missing) + " (run each, then this page, to fill its rows).")
    return out
