"""Seaborn/matplotlib figures shared by the notebooks (each returns a Figure).

Every figure has a title, every data axis names its quantity and unit, every category colour comes from
seaborn's ``colorblind`` palette (heatmaps use ColorBrewer's blue–red ``RdBu``, which has no red–green axis), and
every stand-in is named as one (``clip-mini (CLIP-style stand-in)``): :func:`_standin` adds the label to a bare
registry name. ``tests/test_plots.py`` checks all of this on every public function here.
"""
from __future__ import annotations

import re
import textwrap

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

#: the categorical palette of every figure (checked by tests/test_plots.py)
PALETTE = "colorblind"

sns.set_theme(style="whitegrid", context="notebook", palette=PALETTE)


def _standins() -> dict[str, str]:
    """Registry name -> label of every embedded stand-in scorer or metric (its registry summary says
    "stand-in"): ``{"clip-mini": "clip-mini (CLIP-style stand-in)", "sg-f1": "sg-f1 (SPICE-style stand-in)", …}``."""
    from analysis.registry import METRICS, SCORERS

    out = {}
    for reg in (SCORERS, METRICS):
        for name in reg.names():
            if name.endswith(":"):  # a prefix entry (published checkpoints), never a stand-in
                continue
            summary = reg.entry(name).summary
            if "stand-in" in summary:
                out[name] = summary.split(":")[0].strip()
    return out


def _standin(text) -> str:
    """``text`` with each bare stand-in name replaced by its label, so that no figure names a stand-in without
    saying so; a name already followed by a parenthesis that says "stand-in" is left alone.

    >>> _standin("CLIP-S (clip-mini)"), _standin("clip-mini (CLIP-style stand-in)"), _standin("xe")
    ('CLIP-S (clip-mini (CLIP-style stand-in))', 'clip-mini (CLIP-style stand-in)', 'xe')
    """
    names = _standins()
    text = str(text)
    if not names:
        return text
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    rx = re.compile(rf"(?<![\w+-])({alternatives})(?![\w+-])(?!\s*\([^()]*stand-in)")
    return rx.sub(lambda m: names[m.group(1)], text)


def _standin_note(names) -> str:
    """``"; clip-mini (CLIP-style stand-in), …"``: the labels of the stand-ins named in ``names`` (system or
    scorer names, e.g. ``aclip-s:clip-mini``), for a title over text that names them bare; ``""`` if none."""
    found = dict.fromkeys(lab for n in names for k, lab in _standins().items()
                          if re.search(rf"(?<![\w+-]){re.escape(k)}(?![\w+-])", str(n)))
    return "; " + ", ".join(found) if found else ""


def _fill(text, width: int) -> str:
    """``textwrap.fill`` that never breaks inside a hyphenated word (``stand-in`` stays whole)."""
    return textwrap.fill(str(text), width, break_on_hyphens=False)


def caption_lengths(lengths: pd.DataFrame, *, clip: int = 40):
    """Histogram of words per caption, one panel per dataset (lengths above ``clip`` pooled at ``clip``)."""
    df = lengths.assign(words=lengths["words"].clip(upper=clip))
    g = sns.displot(df, x="words", col="dataset", col_wrap=3, binwidth=1, height=2.4, aspect=1.4,
                    color=sns.color_palette(PALETTE)[0], facet_kws={"sharey": False})
    g.set_titles("{col_name}")
    g.set_axis_labels(f"words per caption (>{clip} pooled)", "captions (count)")
    for ax in g.axes.flat:  # each panel has its own count scale, so each says what it counts
        ax.set_ylabel("captions (count)")
    g.figure.suptitle("Caption length: words per reference caption, one panel per dataset", fontsize=11)
    g.tight_layout()  # the grid's own: keeps the room it made for an outside legend
    return g.figure


def example_grid(ds, *, n: int = 8, seed: int = 0, cols: int = 4, width: int = 38):
    """A grid of ``n`` images drawn with ``seed``, each titled with its first reference caption."""
    from analysis.runtime import rng

    n = min(n, len(ds))
    idx = sorted(rng(seed).choice(len(ds), size=n, replace=False)) if n else []
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx):
        item = ds[int(i)]
        ax.imshow(item.image())
        ax.set_title("\n".join(textwrap.wrap(item.captions[0], width)[:3]), fontsize=10)
    fig.suptitle(f"{ds.name}: {n} example images, each titled with its first reference caption", fontsize=11)
    fig.tight_layout()
    return fig


def error_bars(q: pd.DataFrame) -> list:
    """``[value − ci_low, ci_high − value]`` for matplotlib, never negative (clipped at 0 against rounding)."""
    return [(q["value"] - q["ci_low"]).clip(lower=0), (q["ci_high"] - q["value"]).clip(lower=0)]


def retrieval_bars(rows: pd.DataFrame, *, k: int = 5):
    """Image→text and text→image R@k per scorer (by its label, on the y axis) and dataset (one panel each),
    Wilson 95% intervals as error bars, chance as a dashed line. Text-only scorers are not in retrieval
    (chance by construction)."""
    r = rows[(rows.analysis == "retrieval") & rows.metric.isin([f"i2t_R@{k}", f"t2i_R@{k}"])]
    datasets = list(dict.fromkeys(r["dataset"]))
    labels = list(dict.fromkeys(r["label"]))
    n = max(len(datasets), 1)
    fig, axes = plt.subplots(n, 1, figsize=(9, n * (0.9 + 0.42 * len(labels))), squeeze=False, sharex=True)
    height = 0.4
    colors = sns.color_palette(PALETTE, 2)
    for ax, d in zip(axes.flat, datasets):
        g = r[r.dataset == d]
        for j, (metric, name) in enumerate(((f"i2t_R@{k}", "image→text"), (f"t2i_R@{k}", "text→image"))):
            q = g[g.metric == metric].set_index("label").reindex(labels)
            y = [i + (j - 0.5) * height for i in range(len(labels))]
            ax.barh(y, q["value"], height, color=colors[j], label=name, xerr=error_bars(q), capsize=2)
        ax.axvline(g["chance"].iloc[0], ls="--", c="k", lw=1, label="chance")
        ax.set_yticks(range(len(labels)), [_standin(lab) for lab in labels], fontsize=8)
        ax.invert_yaxis()
        heldout = g["heldout"].iloc[0] if "heldout" in g else ""
        ax.set_title(d + (f" ({heldout})" if heldout else ""), fontsize=9)
        ax.set_xlim(0, 1.02)
    for ax in axes.flat:
        ax.set_ylabel("scorer (stand-ins labelled)", fontsize=9)
    axes.flat[-1].set_xlabel(f"R@{k} on evaluation items (share of queries)")
    axes.flat[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Retrieval R@{k} per scorer and dataset: image→text and text→image, Wilson 95% intervals",
                 fontsize=11)
    fig.tight_layout()
    return fig


def perturbation_accuracy(rows: pd.DataFrame):
    """Share of scenes where the true caption beats its perturbed twin, per kind and scorer (by label), one
    panel per scene dataset, Wilson 95% intervals; hatched bars were trained on these perturbation kinds."""
    p = rows[rows.analysis == "perturbation"].copy()
    datasets = list(dict.fromkeys(p["dataset"]))
    labels = list(dict.fromkeys(p["label"]))
    kinds = list(dict.fromkeys(p["perturbation"]))
    colors = dict(zip(labels, sns.color_palette(PALETTE, len(labels))))
    fig, axes = plt.subplots(len(datasets), 1, figsize=(10, 3.3 * len(datasets) + 0.8), squeeze=False, sharex=True)
    width = 0.8 / max(len(labels), 1)
    for ax, d in zip(axes.flat, datasets):
        for i, lab in enumerate(labels):
            q = p[(p.dataset == d) & (p.label == lab)].set_index("perturbation").reindex(kinds)
            if q["value"].isna().all():
                continue
            x = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(kinds))]
            trained = bool((q["trained_on_perturbations"] == "yes").any()) if "trained_on_perturbations" in q else False
            ax.bar(x, q["value"], width, label=_standin(lab), color=colors[lab], hatch="//" if trained else None,
                   edgecolor="white", yerr=error_bars(q), capsize=2)
        ax.axhline(0.5, ls="--", c="k", lw=1, label="chance")
        ax.set_ylim(0, 1.05)
        heldout = p.loc[p.dataset == d, "heldout"].iloc[0] if "heldout" in p else ""
        ax.set_title(f"{d}" + (f" ({heldout})" if heldout else ""), fontsize=10)
        ax.set_ylabel("true caption wins\n(share of scenes)")
    axes.flat[-1].set_xticks(range(len(kinds)), [k.replace("_", " ") for k in kinds], rotation=15)
    axes.flat[-1].set_xlabel("perturbation of the true caption")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, ncols=3, loc="lower center", frameon=False)
    fig.suptitle("Does the true caption beat its perturbed twin? Per scorer and perturbation, Wilson 95% "
                 "intervals (hatched: trained on these perturbations)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) // 3), 1, 1))
    return fig


def score_distributions(dists: pd.DataFrame):
    """Matched vs mismatched score distributions per scorer (by label) and dataset (each on its own scale)."""
    d = dists.assign(label=dists["label"].map(lambda s: _fill(_standin(s), 30)))
    g = sns.displot(d, x="score", hue="pair", col="label", row="dataset", kind="kde", common_norm=False,
                    palette=PALETTE, facet_kws={"sharex": False, "sharey": False}, height=2.2, aspect=1.3)
    g.set_titles("{row_name} | {col_name}", size=7)
    g.set_axis_labels("", "")  # every panel has its own scales: one label for all, at the figure's edges
    g.figure.supxlabel("score (each model's own units)", fontsize=10)
    g.figure.supylabel("density (per unit score)", fontsize=10)
    g.figure.suptitle("Scores of matched and mismatched image–caption pairs, per dataset (rows) and scorer "
                      "(columns)", fontsize=11)
    g.tight_layout()  # the grid's own: keeps the room it made for an outside legend
    return g.figure


def measure_orderings(rows: pd.DataFrame):
    """Heatmap, measure × known ordering: the share of items where the better caption scores higher (ties ½),
    for the three steps of the scene-graph ladder and fluent against the two Figure-1 forms; 0.5 is a coin,
    1 a measure that always orders them right. Rows by the metric's label (stand-ins say so)."""
    from analysis.measures import LADDER

    lad = rows[(rows.analysis == "ladder") & (rows.metric == "ordered")]
    fig1 = rows[(rows.analysis == "figure1") & (rows.metric == "share")]
    cols = [f"{a} > {b}" for a, b in zip(LADDER, LADDER[1:])] + ["fluent > broken", "fluent > degenerate"]
    tab = pd.concat([lad.assign(col=lad["condition"], v=lad["value"]),
                     fig1.assign(col="fluent > " + fig1["condition"].str.replace(" > fluent", "", regex=False),
                                 v=1 - fig1["value"])])
    tab = tab.pivot_table(index="label", columns="col", values="v", sort=False).reindex(columns=cols)
    tab.index = [_standin(lab) for lab in tab.index]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(tab) + 1.8))
    sns.heatmap(tab, vmin=0, vmax=1, center=0.5, cmap="RdBu", annot=True, fmt=".2f", cbar_kws={"label":
                "share of items ordered right"}, ax=ax, linewidths=0.5)
    ax.set_xlabel("known ordering (better > worse)")
    ax.set_ylabel("measure")
    ax.set_title("Does each metric order captions of known quality? (stamp scenes)", fontsize=11)
    ax.set_xticklabels(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the probe
def scst_curves(curves: pd.DataFrame):
    """SCST training curves, one line per system and seed: the mean sampled reward per step (left; each
    reward on its own scale), and the greedy captions of the fixed training probe batch: CIDEr-D (middle) and
    words per caption (right). The legend names each system as :func:`analysis.probe.label_of` does (stand-ins
    labelled), once per system; seed 0 is drawn darker than the other seeds."""
    from analysis.probe import label_of

    panels = [("reward_mean", "mean reward of the samples", "reward (each reward's own units)"),
              ("greedy_cider_d", "greedy CIDEr-D (probe batch)", "CIDEr-D (corpus score)"),
              ("greedy_length", "greedy caption length (probe batch)", "words per caption")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    palette = dict(zip(dict.fromkeys(curves["system"]), sns.color_palette(PALETTE, curves["system"].nunique())))
    for ax, (col, title, ylabel) in zip(axes, panels):
        d = curves.dropna(subset=[col]) if col in curves else curves.iloc[:0]
        if col == "reward_mean" and len(d):
            d = d.assign(**{col: d.groupby(["system", "seed"])[col].transform(
                lambda v: v.rolling(10, min_periods=1).mean())})
        named = set()
        for (sy, sd), g in d.groupby(["system", "seed"], sort=False):
            ax.plot(g["step"], g[col], color=palette[sy], alpha=0.9 if sd == 0 else 0.5,
                    label=None if sy in named else _standin(label_of(sy)))
            named.add(sy)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("SCST step")
        ax.set_ylabel(ylabel)
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, fontsize=8, loc="lower center", ncols=min(len(handles), 2), frameon=False)
    seeds = sorted(curves["seed"].unique()) if len(curves) else []
    fig.suptitle("SCST from the XE captioner (rewards from embedded stand-ins; 10-step moving mean of the reward"
                 + (f"; one line per seed {', '.join(map(str, seeds))}, seed 0 darker)" if len(seeds) > 1 else ")"),
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.05 + 0.05 * ((len(handles) + 1) // 2), 1, 1))
    return fig


def xe_curve(curve: pd.DataFrame):
    """The XE captioner's training curve: cross-entropy per token (``loss``) against the XE step (``step``)."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(curve["step"], curve["loss"], color=sns.color_palette(PALETTE)[0])
    ax.set_xlabel("XE step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title("XE training of the captioner (embedded training split)", fontsize=11)
    fig.tight_layout()
    return fig


def caption_examples(examples: pd.DataFrame, paths: dict, *, cols: int = 4, width: int = 34, title: str = ""):
    """Each example image with the caption of every system below it (``examples``: one row per image id,
    one column per system; ``paths``: image id -> file), under ``title`` (by default: what the panels show and
    the labels of the stand-ins whose names the systems carry)."""
    from analysis.data.base import open_rgb

    n = len(examples)
    rows = max(1, -(-n // cols))
    k = len(examples.columns)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, (2.6 + 0.34 * k * 2) * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image_id, caps) in zip(axes.flat, examples.iterrows()):
        ax.imshow(open_rgb(paths[image_id]))
        lines = []
        for system, cap in caps.items():
            wrapped = textwrap.wrap(f"{system}: {cap if isinstance(cap, str) and cap else '(empty)'}", width)
            lines += wrapped[:2] + (["…"] if len(wrapped) > 2 else [])
        ax.text(0.0, -0.03, "\n".join(lines), transform=ax.transAxes, va="top", ha="left", fontsize=7.5,
                family="monospace")
    fig.suptitle(title or ("Example test images, each with every system's caption (systems named by their "
                           f"training reward{_standin_note(examples.columns)})"), fontsize=10)
    fig.tight_layout()
    return fig


def cross_heatmap(standardised: pd.DataFrame, raw: pd.DataFrame):
    """Captioner (trained with reward A, rows) × scorer B (columns): the mean score of A's test captions under B,
    annotated with the raw mean and coloured by its distance from the XE captioner's mean in units of the
    column's spread over captioners (scorers have different scales)."""
    fig, ax = plt.subplots(figsize=(1.7 * len(raw.columns) + 3.5, 0.45 * len(raw) + 1.8))
    sns.heatmap(standardised, center=0, cmap="RdBu_r", annot=raw.round(2), fmt="", ax=ax, linewidths=0.5,
                cbar_kws={"label": "(mean − XE mean) / sd over captioners"})
    ax.set_xlabel("scored by (embedded stand-ins; blind is text-only)")
    ax.set_ylabel("captioner (SCST reward)")
    ax.set_title("Cross-scoring: each captioner's test captions under every scorer", fontsize=11)
    fig.tight_layout()
    return fig


def decoding_tradeoff(sweep: pd.DataFrame):
    """Reward-guided decoding: mean guiding score (x) against mean prior log-probability per token (y) for each
    prior weight, one panel per scorer, one line per prior."""
    d = sweep.assign(lp_per_token=sweep["prior_logprob"] / sweep["tokens"].clip(lower=1))
    m = d.groupby(["scorer", "prior", "weight"], sort=False)[["score", "lp_per_token"]].mean().reset_index()
    scorers = list(dict.fromkeys(m["scorer"]))
    fig, axes = plt.subplots(1, len(scorers), figsize=(3.4 * len(scorers), 3.3), squeeze=False)
    colors = dict(zip(dict.fromkeys(m["prior"]), sns.color_palette(PALETTE, m["prior"].nunique())))
    names = {p: lab for p, lab in zip(sweep["prior"], sweep["prior_label"]) if isinstance(lab, str) and lab} \
        if "prior_label" in sweep else {}
    for ax, sc in zip(axes.flat, scorers):
        for pr, g in m[m.scorer == sc].groupby("prior", sort=False):
            ax.plot(g["score"], g["lp_per_token"], marker="o", color=colors[pr],
                    label=f"prior: {_standin(names.get(pr) or pr)}")
            for _, r in g.iterrows():
                ax.annotate(f"w={r['weight']:g}", (r["score"], r["lp_per_token"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        ax.set_title(_fill(f"guided by {_standin(sc)}", 36), fontsize=9)
        ax.set_xlabel("mean score (the guiding scorer's own units)", fontsize=9)
        ax.set_ylabel("prior log-prob per token (nats)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=8, loc="lower center", ncols=min(len(handles), 2), frameon=False)
    fig.suptitle("Reward-guided decoding: scorer vs prior as the prior weight w grows", fontsize=11)
    fig.tight_layout(rect=(0, 0.1 if handles else 0, 1, 1))
    return fig


# ----------------------------------------------------------------------------- realignment (ReCap)
def realign_cosines(cos: pd.DataFrame):
    """True-pair vs random-pair cosine distributions (one pair per evaluation image; random pairs from a
    seeded derangement), one panel per setting (columns) and stage (rows: unaligned, after the map named in
    the panel title); dashed lines at each distribution's mean."""
    settings = list(dict.fromkeys(cos["setting"]))
    stages = [s for s in ("before", "after") if s in set(cos["stage"])]
    fig, axes = plt.subplots(len(stages), len(settings), figsize=(4.6 * len(settings), 2.9 * len(stages)),
                             squeeze=False, sharex=True)
    colors = dict(zip(("true pair", "random pair"), sns.color_palette(PALETTE, 2)))
    label = _standin(cos["label"].iloc[0]) if "label" in cos and len(cos) else ""
    for i, stage in enumerate(stages):
        for j, setting in enumerate(settings):
            ax = axes[i, j]
            g = cos[(cos.setting == setting) & (cos.stage == stage)]
            for pair, c in colors.items():
                v = g.loc[g.pair == pair, "cosine"]
                if v.empty:
                    continue
                ax.hist(v, bins=20, density=True, histtype="stepfilled", alpha=0.35, color=c,
                        label=f"{pair} (n = {len(v)})")
                ax.axvline(v.mean(), color=c, ls="--", lw=1)
            where = g["dataset"].iloc[0] if "dataset" in g and len(g) else ""
            ax.set_title(f"{setting}: {g['map'].iloc[0] if len(g) else '?'}" + (f"\n{where}" if where else ""),
                         fontsize=9)
            ax.set_ylabel("density (per unit cosine)")
            ax.legend(fontsize=7, title=label if (i, j) == (0, 0) else None, title_fontsize=7)
    fig.supxlabel("cosine of an image and a caption embedding (unitless, −1 to 1)", fontsize=10)
    fig.suptitle("Modality gap: true- vs random-pair cosines before and after the map (dashed: means)",
                 fontsize=11)
    fig.tight_layout()
    return fig


def realign_retrieval(ret: pd.DataFrame):
    """R@k of each map against unaligned, one panel per setting (columns) and k (rows), image→text and
    text→image bars side by side with Wilson 95% intervals, chance of each direction as a dashed line."""
    settings = list(dict.fromkeys(ret["setting"]))
    ks = sorted(set(ret["k"]))
    dirs = ["image→text", "text→image"]
    colors = dict(zip(dirs, sns.color_palette(PALETTE, 2)))
    maps = list(dict.fromkeys(ret["map"]))
    fig, axes = plt.subplots(len(settings), len(ks), figsize=(max(9.0, 0.75 * len(maps) * len(ks) + 2),
                                                            3.0 * len(settings) + 0.9), squeeze=False, sharey=True)
    width = 0.4
    label = _standin(ret["label"].iloc[0]) if "label" in ret and len(ret) else ""
    for i, setting in enumerate(settings):
        for j, k in enumerate(ks):
            ax = axes[i, j]
            g = ret[(ret.setting == setting) & (ret.k == k)]
            for d_i, d in enumerate(dirs):
                q = g[g.direction == d].set_index("map").reindex(maps)
                x = [m + (d_i - 0.5) * width for m in range(len(maps))]
                ax.bar(x, q["value"], width, color=colors[d], label=f"{d}: {label}", yerr=error_bars(q), capsize=2)
                chance = q["chance"].dropna()
                if len(chance):
                    ax.axhline(chance.iloc[0], color=colors[d], ls="--", lw=1, label=f"chance ({d})")
            n = int(g["n"].iloc[0]) if len(g) else 0
            ax.set_title(f"{setting}, R@{k} ({n} evaluation images"
                         f"{', held-out folds pooled' if setting == 'transfer' else ''})", fontsize=9)
            ax.set_xticks(range(len(maps)), maps, rotation=20, ha="right", fontsize=8)
            ax.set_ylim(0, 1.02)
            ax.set_ylabel("R@k (share of queries)")
            ax.set_xlabel("map of the image side (unaligned = none)", fontsize=9)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, ncols=2, loc="lower center", frameon=False)
    fig.suptitle("Retrieval before and after each closed-form map (Wilson 95% intervals)", fontsize=11)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def realign_sweep(sweep: pd.DataFrame, *, metrics=("i2t_R@1", "t2i_R@1", "i2t_R@5")):
    """The data-fraction sweep: R@k against the number of fitting pairs (log axis), one line per method (the
    mean over seeds) with a band from the lowest to the highest seed, one panel per metric."""
    names = {"i2t": "image→text", "t2i": "text→image"}
    metrics = [m for m in metrics if m in set(sweep["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.3 * len(metrics), 3.4), squeeze=False, sharey=True)
    methods = list(dict.fromkeys(sweep["method"]))
    colors = dict(zip(methods, sns.color_palette(PALETTE, len(methods))))
    label = _standin(sweep["label"].iloc[0]) if "label" in sweep and len(sweep) else ""
    seeds = sweep["seed"].nunique()
    for ax, metric in zip(axes.flat, metrics):
        for m in methods:
            g = sweep[(sweep.method == m) & (sweep.metric == metric)]
            s = g.groupby("n_fit")["value"].agg(["mean", "min", "max"]).sort_index()
            ax.plot(s.index, s["mean"], marker="o", ms=3, color=colors[m], label=f"{m}: {label}")
            ax.fill_between(s.index, s["min"], s["max"], color=colors[m], alpha=0.2, lw=0)
        d, k = metric.split("_R@")
        n = f", {int(sweep['n'].iloc[0])} evaluation images" if "n" in sweep and len(sweep) else ""
        ax.set_title(f"{names.get(d, d)} R@{k}{n}", fontsize=9)
        ax.set_xscale("log")
        ticks = sorted(set(sweep["n_fit"]))
        ax.set_xticks(ticks, [str(int(t)) for t in ticks], rotation=45, fontsize=8)
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set_xlabel("fitting pairs (log scale)")
        ax.set_ylabel(f"R@{k} (share of queries)")
        ax.set_ylim(0, 1.02)
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"In-domain data-fraction sweep: mean of {seeds} seeds, band = lowest to highest seed",
                 fontsize=11)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- realignment: captions (ReCap)
def _recap_panels(n: int, cols: int = 3):
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes


def _recap_metric_panels(frame: pd.DataFrame, by: str, xlabel: str, ylabel: str):
    """One labelled panel per metric of ``frame`` (in order of first appearance): ``(fig, axes, order, panels)``
    with ``order`` the ``by`` values in order of first appearance and ``panels`` a list of ``(ax, g)``, ``g``
    that metric's rows indexed by ``by`` in ``order`` (rows without a value left out), drawn at y = 0, 1, …
    from the top: the y ticks name ``g``'s index, the title the metric, the x axis ``xlabel``, the y axis
    ``ylabel``."""
    from analysis.prose import recap_metric_label

    metrics = list(dict.fromkeys(frame["metric"]))
    order = list(dict.fromkeys(frame[by]))
    fig, axes = _recap_panels(len(metrics))
    panels = []
    for ax, m in zip(axes.flat, metrics):
        g = frame[frame["metric"] == m].set_index(by).reindex(order).dropna(subset=["value"])
        ax.set_yticks(range(len(g)), list(g.index), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(_fill(_standin(recap_metric_label(m)), 40), fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        panels.append((ax, g))
    return fig, axes, order, panels


def recap_means(rows: pd.DataFrame, *, scorer_label: str = "clip-mini (CLIP-style stand-in)"):
    """One panel per metric: each captioning system's mean over the test images with its bootstrap 95% interval
    (the ``summary`` rows of :func:`analysis.captioning.retrieval.run_captions`)."""
    fig, _, systems, panels = _recap_metric_panels(rows[rows["analysis"] == "summary"], "system",
                                                   "mean per caption (the panel's metric)", "captioning system")
    colors = dict(zip(systems, sns.color_palette(PALETTE, len(systems))))
    for ax, g in panels:
        y = list(range(len(g)))
        ax.errorbar(g["value"], y, xerr=[g["value"] - g["low"], g["high"] - g["value"]], fmt="none", ecolor="0.4",
                    lw=1, capsize=2)
        ax.scatter(g["value"], y, c=[colors[x] for x in g.index], s=28, zorder=3)
    fig.suptitle(f"Captioning systems on the probe's test images: mean and bootstrap 95% interval "
                 f"(CLIP-family metrics under {_standin(scorer_label)})", fontsize=10)
    fig.tight_layout()
    return fig


def recap_differences(rows: pd.DataFrame):
    """One panel per metric: each paired difference ``a − b`` over the same test images with its paired
    bootstrap 95% interval; filled markers hold after Holm (within each contrast), open ones do not."""
    from analysis.prose import significant

    fig, axes, contrasts, panels = _recap_metric_panels(rows[rows["analysis"] == "difference"], "contrast",
                                                        "paired difference a − b (the panel's metric)",
                                                        "contrast a − b")
    colors = dict(zip(contrasts, sns.color_palette(PALETTE, len(contrasts))))
    for ax, g in panels:
        for j, (c, r) in enumerate(g.iterrows()):
            sig = significant(r)
            ax.errorbar([r["value"]], [j], xerr=[[r["value"] - r["low"]], [r["high"] - r["value"]]], fmt="o",
                        color=colors[c], mfc=colors[c] if sig else "white", capsize=2, lw=1,
                        label=c if ax is axes.flat[0] else None)
        ax.axvline(0, color="0.3", lw=0.8, ls="--")
    fig.suptitle("Paired differences over the same test images, bootstrap 95% intervals "
                 "(filled: holds after Holm within the contrast)", fontsize=10)
    fig.tight_layout()
    return fig


def bridge_differences(rows: pd.DataFrame):
    """The bridge (:mod:`analysis.bridge`): one panel per measure, the paired difference aligned − raw reward over
    the same test images with its two-level bootstrap 95% interval; filled markers hold after Holm over the
    measures, open ones do not. The panel title names the measure and the raw reward's value; the y axis carries
    no quantity (one interval per panel), so it has no ticks and no label."""
    from analysis.prose import significant

    d = rows[(rows["analysis"] == "difference") & (rows["value"].notna())]
    fig, axes = _recap_panels(max(len(d), 1), cols=4)
    color = sns.color_palette(PALETTE, 1)[0]
    for ax, (_, r) in zip(axes.flat, d.iterrows()):
        sig = significant(r)
        ax.errorbar([r["value"]], [0], xerr=[[r["value"] - r["low"]], [r["high"] - r["value"]]], fmt="o",
                    color=color, mfc=color if sig else "white", capsize=3, lw=1.2)
        ax.axvline(0, color="0.3", lw=0.8, ls="--")
        ax.locator_params(axis="x", nbins=5)  # narrow panels: fewer ticks, so their labels never overlap
        ax.set_yticks([])
        ax.set_title(f"{_fill(_standin(r['label']), 40)}\n(raw reward: {r['value_b']:.3g})", fontsize=9)
        ax.set_xlabel("aligned − raw (measure's units)", fontsize=8)
    if d.empty:
        axes.flat[0].text(0.5, 0.5, "no paired difference in this run", ha="center", va="center")
    system = d["system"].iloc[0] if len(d) else "aligned"
    base = d["baseline"].iloc[0] if len(d) else "raw"
    note = _standin_note([system, base]).lstrip("; ")
    fig.suptitle(f"SCST captions with the {system} reward minus those with the {base} reward"
                 + (f" ({note})" if note else "") + ": paired bootstrap 95% intervals (filled: holds after Holm)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def recap_examples(examples: pd.DataFrame, paths: dict, *, scorer_label: str = "clip-mini (CLIP-style stand-in)",
                   lm_label: str = "", width: int = 44):
    """:func:`caption_examples` of the captioning systems with a title naming the retrieval encoder and the LM."""
    lm = f"; LM: {lm_label}" if lm_label else ""
    return caption_examples(examples, paths, cols=4, width=width, title="The probe's example test images with every "
                            f"system's caption (retrieval: {_standin(scorer_label)}{lm})")


def speed_comparison(table: pd.DataFrame, curves: pd.DataFrame | None = None):
    """ReCap's speed claim on one figure, from the reference variant of the speed page's measurement table
    (:func:`analysis.mappers.run_speed`'s frame). Left: training seconds per approach as horizontal bars on a
    log axis, coloured by kind, each annotated with its ratio to the reference closed form (``≥`` and hatching:
    a gradient mapper stopped by its budget, a lower bound). Right: held-out image→text R@1 reached against
    training seconds (log axis), the reference's R@1 as a dashed line, every gradient run's held-out checks
    (``curves``: approach, seconds, ``eval_r1`` or else ``r1``) as thin lines; the captioner has no R@1 (it
    makes captions). With a separate stopping split (the page: stopped on val) every R@1 drawn is the reported
    (test) split's, and the axis label says where the mappers stopped."""
    from analysis.mappers import _flag, _splits, variant_of

    t = variant_of(table, targets="reference").reset_index(drop=True)
    test, stop = _splits(t)  # the reported split and the one the mappers stopped on (the same on old tables)
    label = _standin(t["label"].iloc[0]) if "label" in t and len(t) else "the encoder"
    ref = str(t["reference"].iloc[0]) if "reference" in t and len(t) else "the closed form"
    kinds = list(dict.fromkeys(t["kind"]))
    colors = dict(zip(["closed-form", "gradient", "captioner"], sns.color_palette(PALETTE, 3)))
    bound = [k == "gradient" and _flag(x) is not True for k, x in zip(t["kind"], t["reached_target"])]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12.5, 0.5 * len(t) + 2.6))
    y = range(len(t))
    ax.barh(list(y), t["train_seconds"], color=[colors.get(k, "0.5") for k in t["kind"]],
            hatch=None, edgecolor="0.2", linewidth=0.5)
    for i, (s, r, b) in enumerate(zip(t["train_seconds"], t["ratio"], bound)):
        if b:
            ax.barh([i], [s], color="none", hatch="//", edgecolor="0.2", linewidth=0.5)
        txt = ("≥ " if b else "") + (f"{r:,.0f}×" if r >= 10 else f"{r:.2g}×")
        ax.text(s * 1.15, i, txt, va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_yticks(list(y), list(t["approach"]))
    ax.set_ylabel("approach")
    ax.invert_yaxis()
    lo, hi = t["train_seconds"].min(), t["train_seconds"].max()
    ax.set_xlim(lo / 3, hi * 12)
    ax.set_xlabel("training seconds (log scale; ratio to " + ref + " annotated)")
    ax.set_title("Training time per approach", fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[k]) for k in kinds if k in colors]
    names = [k for k in kinds if k in colors]
    if any(bound):
        handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="white", hatch="//", edgecolor="0.2"))
        names.append("stopped by its budget (lower bound)")
    ax.legend(handles, names, fontsize=8, loc="upper right")
    m = t[t["i2t_R@1"].notna()]
    grads = list(dict.fromkeys(m.loc[m["kind"] == "gradient", "approach"]))
    pal = sns.color_palette(PALETTE, 10)
    own = dict(zip(grads, [pal[i] for i in (3, 4, 7, 8, 9, 5)]))  # apart from the kinds' blue, orange and green
    if curves is not None and len(curves):
        for a, g in curves.groupby("approach", sort=False):
            g = g[g["seconds"] > 0]
            bx.plot(g["seconds"], g["eval_r1" if "eval_r1" in g else "r1"], color=own.get(a, "0.5"), lw=0.9,
                    alpha=0.6)  # the reported (test) set's R@1 at each check
    cf = m[m["kind"] == "closed-form"]
    bx.scatter(cf["train_seconds"], cf["i2t_R@1"], color=colors["closed-form"], s=40, zorder=3, label="closed-form maps")
    for a in grads:
        g = m[m["approach"] == a]
        bx.scatter(g["train_seconds"], g["i2t_R@1"], color=own[a], s=40, zorder=3, edgecolor="0.2",
                   label=f"{a} (end of its run; line: its checks)")
    for s, r, a in zip(m["train_seconds"], m["i2t_R@1"], m["approach"]):
        bx.annotate(a, (s, r), textcoords="offset points", xytext=(4, 4), fontsize=8)
    target = t.loc[t["approach"] == ref, "i2t_R@1"]
    if len(target):
        bx.axhline(float(target.iloc[0]), color="0.3", ls="--", lw=0.8, label=f"{ref}'s R@1 (the target)"
                   if stop == test else f"{ref}'s {test} R@1 (the target is its {stop} R@1)")
    bx.set_xscale("log")
    bx.set_xlabel("training seconds (log scale)")
    bx.set_ylabel(f"held-out image→text R@1, {label}" if stop == test else
                  f"{test} image→text R@1, {label}\n(mappers stopped on {stop} R@1)")
    caps = t[t["kind"] == "captioner"]
    note = f"; {', '.join(caps['approach'])}: no R@1 (it makes captions)" if len(caps) else ""
    bx.set_title(f"Quality reached against time{note}", fontsize=10)
    bx.margins(x=0.2)
    bx.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.suptitle(f"Closed-form alignment against gradient-trained mappers and a captioner, on {label} embeddings",
                 fontsize=11)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- realignment: metrics and judgements
def _wrap(text: str, width: int = 44) -> str:
    """``text`` wrapped at ``width`` (never inside a hyphenated word, so ``stand-in`` stays whole)."""
    return _fill(text, width) or str(text)


def _set_heading(dataset: str, kind: str, variant: str) -> str:
    tag = "rule-made, not human judgements" if kind == "rule-made" else "human judgements"
    return f"{dataset} ({tag}; τ{variant})"


def tau_intervals(rows: pd.DataFrame):
    """Kendall τ × 100 of every metric (y, by its label) on each judgement set with a value (one panel each), with
    its clustered 95% bootstrap interval; aligned metrics (aCLIP-S family) in their own colour. Rule-made sets are
    titled "rule-made, not human judgements"; sets without data here are not drawn (the table says why)."""
    import numpy as np

    r = rows[(rows["run"] == "correlation") & rows["value"].notna()]
    sets = list(dict.fromkeys(r["dataset"]))
    labels = list(dict.fromkeys(rows.loc[rows["run"] == "correlation", "label"]))
    n = max(len(sets), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n + 3.2, 0.42 * len(labels) + 1.8), squeeze=False, sharey=True)
    colors = sns.color_palette(PALETTE, 3)
    kinds = {"aligned (aCLIP-S, RefaCLIP-S)": colors[1], "other metrics": colors[0]}
    aligned = rows.loc[rows["metric"].astype(str).str.match(r"^(ref)?aclip-s:"), "label"]
    y = {lab: i for i, lab in enumerate(labels)}
    for ax, d in zip(axes.flat, sets):
        g = r[r["dataset"] == d]
        for kind, color in kinds.items():
            h = g[g["label"].isin(aligned)] if kind.startswith("aligned") else g[~g["label"].isin(aligned)]
            if h.empty:
                continue
            err = [(h["value"] - h["low"]).clip(lower=0).fillna(0), (h["high"] - h["value"]).clip(lower=0).fillna(0)]
            ax.errorbar(h["value"], [y[lab] for lab in h["label"]], xerr=err, fmt="o", color=color, capsize=3,
                        label=kind)
        ax.axvline(0, color="0.4", lw=0.8, ls="--")
        first = g.iloc[0]
        ax.set_title(_wrap(_set_heading(d, first["judgement_kind"], first["variant"]), 40), fontsize=10)
        ax.set_xlabel("Kendall τ × 100 (95% CI, clustered over images)")
    if not sets:
        axes.flat[0].text(0.5, 0.5, "no judgement set has data here", ha="center", va="center")
    ax0 = axes.flat[0]
    ax0.set_yticks(np.arange(len(labels)))
    ax0.set_yticklabels([_wrap(_standin(lab)) for lab in labels], fontsize=8)
    ax0.set_ylim(len(labels) - 0.5, -0.5)
    ax0.set_ylabel("metric (stand-ins labelled)")
    handles, names = ax0.get_legend_handles_labels()
    if handles:
        ax0.legend(handles, names, fontsize=8, loc="lower left")
    fig.suptitle("Correlation of each metric with the judgements of each set", fontsize=11)
    fig.tight_layout()
    return fig


def tau_differences(diffs: pd.DataFrame):
    """The paired differences τ(aligned) − τ(unaligned) × 100 (x) per comparison and judgement set (y), with their
    paired clustered 95% bootstrap intervals and Holm-corrected p; zero (no difference) dashed. Only the
    comparisons with a value are drawn."""
    import numpy as np

    d = diffs[diffs["value"].notna()] if len(diffs) else diffs
    fig, ax = plt.subplots(figsize=(10, 0.6 * max(len(d), 1) + 2.6))
    if d.empty:
        ax.text(0.5, 0.5, "no paired comparison has data here", ha="center", va="center")
        ax.set_axis_off()
        ax.set_title("τ(aligned) − τ(unaligned): nothing to compare", fontsize=11)
        return fig
    colors = dict(zip(dict.fromkeys(d["label"]), sns.color_palette(PALETTE, d["label"].nunique())))
    ys = np.arange(len(d))
    for yi, (_, r) in zip(ys, d.iterrows()):
        ax.errorbar([r["value"]], [yi], xerr=[[max(r["value"] - r["low"], 0)], [max(r["high"] - r["value"], 0)]],
                    fmt="o", color=colors[r["label"]], capsize=3)
        ax.annotate(f"Holm p = {r['p_holm']:.3g}", (r["high"], yi), textcoords="offset points", xytext=(6, -3),
                    fontsize=8)
    ax.axvline(0, color="0.4", lw=0.8, ls="--")
    lo, hi = float(np.nanmin(d["low"].fillna(d["value"]))), float(np.nanmax(d["high"].fillna(d["value"])))
    ax.set_xlim(min(lo, 0) - 0.05 * (hi - lo + 1), max(hi, 0) + 0.35 * (hi - lo + 1))  # room for the Holm p
    ax.set_yticks(ys)
    ax.set_yticklabels([_wrap(f"{r['label'].split(' (')[0]} on "
                              f"{_set_heading(r['dataset'], r['judgement_kind'], r['variant'])}", 40)
                        for _, r in d.iterrows()], fontsize=8)
    ax.set_ylim(len(d) - 0.5, -0.5)
    ax.set_xlabel("Δτ × 100 = τ(aligned) − τ(unaligned), same rows (paired clustered 95% bootstrap CI)")
    ax.set_ylabel("comparison and judgement set")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c) for c in colors.values()]
    ax.legend(handles, [_wrap(_standin(lab), 70) for lab in colors], fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.22), ncol=1, frameon=False)
    ax.set_title("Does realignment raise the correlation? Paired differences", fontsize=11)
    fig.tight_layout()
    return fig


def noise_curves(noise: pd.DataFrame):
    """Noise robustness: τ × 100 (top row, 95% band) and the mean score of the true captions (bottom row) against
    the noise σ, for pixel noise (left) and embedding noise (right), one line per metric (stand-ins labelled)."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), squeeze=False)
    if noise is None or noise.empty:
        for ax in axes.flat:
            ax.set_axis_off()
        axes[0, 0].text(0.5, 0.5, "no noise sweep was run", ha="center", va="center")
        fig.suptitle("Noise robustness: no noise sweep in this run", fontsize=11)
        return fig
    labels = list(dict.fromkeys(noise["label"]))
    colors = dict(zip(labels, sns.color_palette(PALETTE, len(labels))))
    xlab = {"image": "pixel noise σ (Gaussian, on the [0, 1] pixel scale)",
            "embedding": "embedding noise σ (Gaussian, relative to the unit embedding)"}
    for j, kind in enumerate(("image", "embedding")):
        g = noise[(noise["noise"] == kind) & noise["value"].notna()]
        for lab, h in g.groupby("label", sort=False):
            h = h.sort_values("sigma")
            axes[0, j].plot(h["sigma"], h["value"], marker="o", color=colors[lab], label=_wrap(_standin(lab), 50))
            axes[0, j].fill_between(h["sigma"], h["low"], h["high"], color=colors[lab], alpha=0.15)
            axes[1, j].plot(h["sigma"], h["top_mean"], marker="o", color=colors[lab], label=_wrap(_standin(lab), 50))
        stage = g["embedding_stage"].dropna().iloc[0] if kind == "embedding" and len(g) else ""
        where = {"encoder": " (on the encoder output, before the map)",
                 "metric": " (after the map)"}.get(stage, "")
        name = "Pixel" if kind == "image" else "Embedding"
        axes[0, j].set_title(f"{name} noise{where}: correlation", fontsize=10)
        axes[1, j].set_title(f"{name} noise: mean score of the true captions", fontsize=10)
        axes[0, j].set_ylabel(f"Kendall τ{noise['variant'].iloc[0]} × 100 (95% CI band)")
        axes[1, j].set_ylabel("mean score (each metric's own units)")
        for i in range(2):
            axes[i, j].set_xlabel(xlab[kind])
    axes[0, 0].legend(fontsize=8, loc="best")
    d = noise.iloc[0]
    fig.suptitle(f"Noise robustness on {_set_heading(d['dataset'], d['judgement_kind'], d['variant'])}", fontsize=11)
    fig.tight_layout()
    return fig
