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
