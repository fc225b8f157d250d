"""Seaborn/matplotlib figures shared by the notebooks (each returns a Figure)."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")


def caption_lengths(lengths: pd.DataFrame, *, clip: int = 40):
    """Histogram of words per caption, one panel per dataset (lengths above ``clip`` pooled at ``clip``)."""
    df = lengths.assign(words=lengths["words"].clip(upper=clip))
    g = sns.displot(df, x="words", col="dataset", col_wrap=3, binwidth=1, height=2.4, aspect=1.4,
                    facet_kws={"sharey": False})
    g.set_titles("{col_name}")
    g.set_axis_labels(f"words per caption (>{clip} pooled)", "captions")
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
    fig.suptitle(ds.name, fontsize=11)
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
    colors = sns.color_palette("colorblind", 2)
    for ax, d in zip(axes.flat, datasets):
        g = r[r.dataset == d]
        for j, (metric, name) in enumerate(((f"i2t_R@{k}", "image→text"), (f"t2i_R@{k}", "text→image"))):
            q = g[g.metric == metric].set_index("label").reindex(labels)
            y = [i + (j - 0.5) * height for i in range(len(labels))]
            ax.barh(y, q["value"], height, color=colors[j], label=name, xerr=error_bars(q), capsize=2)
        ax.axvline(g["chance"].iloc[0], ls="--", c="k", lw=1, label="chance")
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        heldout = g["heldout"].iloc[0] if "heldout" in g else ""
        ax.set_title(d + (f" ({heldout})" if heldout else ""), fontsize=9)
        ax.set_xlim(0, 1.02)
    axes.flat[-1].set_xlabel(f"R@{k} on evaluation items (share of queries)")
    axes.flat[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def perturbation_accuracy(rows: pd.DataFrame):
    """Share of scenes where the true caption beats its perturbed twin, per kind and scorer (by label), one
    panel per scene dataset, Wilson 95% intervals; hatched bars were trained on these perturbation kinds."""
    p = rows[rows.analysis == "perturbation"].copy()
    datasets = list(dict.fromkeys(p["dataset"]))
    labels = list(dict.fromkeys(p["label"]))
    kinds = list(dict.fromkeys(p["perturbation"]))
    colors = dict(zip(labels, sns.color_palette("colorblind", len(labels))))
    fig, axes = plt.subplots(len(datasets), 1, figsize=(10, 3.3 * len(datasets) + 0.8), squeeze=False, sharex=True)
    width = 0.8 / max(len(labels), 1)
    for ax, d in zip(axes.flat, datasets):
        for i, lab in enumerate(labels):
            q = p[(p.dataset == d) & (p.label == lab)].set_index("perturbation").reindex(kinds)
            if q["value"].isna().all():
                continue
            x = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(kinds))]
            trained = bool((q["trained_on_perturbations"] == "yes").any()) if "trained_on_perturbations" in q else False
            ax.bar(x, q["value"], width, label=lab, color=colors[lab], hatch="//" if trained else None,
                   edgecolor="white", yerr=error_bars(q), capsize=2)
        ax.axhline(0.5, ls="--", c="k", lw=1, label="chance")
        ax.set_ylim(0, 1.05)
        heldout = p.loc[p.dataset == d, "heldout"].iloc[0] if "heldout" in p else ""
        ax.set_title(f"{d}" + (f" ({heldout})" if heldout else ""), fontsize=10)
        ax.set_ylabel("true caption wins (share)")
    axes.flat[-1].set_xticks(range(len(kinds)), [k.replace("_", " ") for k in kinds], rotation=15)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, ncols=3, loc="lower center", frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) // 3), 1, 1))
    return fig


def score_distributions(dists: pd.DataFrame):
    """Matched vs mismatched score distributions per scorer (by label) and dataset (each on its own scale)."""
    d = dists.assign(label=dists["label"].map(lambda s: textwrap.fill(s, 30)))
    g = sns.displot(d, x="score", hue="pair", col="label", row="dataset", kind="kde", common_norm=False,
                    palette="colorblind", facet_kws={"sharex": False, "sharey": False}, height=2.2, aspect=1.3)
    g.set_titles("{row_name} | {col_name}", size=7)
    g.set_axis_labels("score (the model's own units)", "density")
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
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(tab) + 1.8))
    sns.heatmap(tab, vmin=0, vmax=1, center=0.5, cmap="vlag_r", annot=True, fmt=".2f", cbar_kws={"label":
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
    words per caption (right)."""
    panels = [("reward_mean", "mean reward of the samples", "reward (its own units)"),
              ("greedy_cider_d", "greedy CIDEr-D (probe batch)", "CIDEr-D"),
              ("greedy_length", "greedy caption length (probe batch)", "words per caption")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    palette = dict(zip(dict.fromkeys(curves["system"]), sns.color_palette("colorblind", curves["system"].nunique())))
    for ax, (col, title, ylabel) in zip(axes, panels):
        d = curves.dropna(subset=[col]) if col in curves else curves.iloc[:0]
        if col == "reward_mean" and len(d):
            d = d.assign(**{col: d.groupby(["system", "seed"])[col].transform(
                lambda v: v.rolling(10, min_periods=1).mean())})
        for (sy, sd), g in d.groupby(["system", "seed"], sort=False):
            ax.plot(g["step"], g[col], color=palette[sy], alpha=0.9 if sd == 0 else 0.5,
                    label=f"{sy} (seed {sd})")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("SCST step")
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle("SCST from the XE captioner (rewards from embedded stand-ins; 10-step moving mean of the reward)",
                 fontsize=11)
    fig.tight_layout()
    return fig


def caption_examples(examples: pd.DataFrame, paths: dict, *, cols: int = 4, width: int = 34):
    """Each example image with the caption of every system below it (``examples``: one row per image id,
    one column per system; ``paths``: image id -> file)."""
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
    fig.tight_layout()
    return fig


def cross_heatmap(standardised: pd.DataFrame, raw: pd.DataFrame):
    """Captioner (trained with reward A, rows) × scorer B (columns): the mean score of A's test captions under B,
    annotated with the raw mean and coloured by its distance from the XE captioner's mean in units of the
    column's spread over captioners (scorers have different scales)."""
    fig, ax = plt.subplots(figsize=(1.7 * len(raw.columns) + 3.5, 0.45 * len(raw) + 1.8))
    sns.heatmap(standardised, center=0, cmap="vlag", annot=raw.round(2), fmt="", ax=ax, linewidths=0.5,
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
    colors = dict(zip(dict.fromkeys(m["prior"]), sns.color_palette("colorblind", m["prior"].nunique())))
    for ax, sc in zip(axes.flat, scorers):
        for pr, g in m[m.scorer == sc].groupby("prior", sort=False):
            ax.plot(g["score"], g["lp_per_token"], marker="o", color=colors[pr], label=pr)
            for _, r in g.iterrows():
                ax.annotate(f"w={r['weight']:g}", (r["score"], r["lp_per_token"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        ax.set_title(sc, fontsize=10)
        ax.set_xlabel("mean score (guiding scorer)")
        ax.set_ylabel("prior log-prob per token (nats)")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Reward-guided decoding: scorer vs prior as the prior weight w grows", fontsize=11)
    fig.tight_layout()
    return fig
