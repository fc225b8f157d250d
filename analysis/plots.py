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


def retrieval_bars(rows: pd.DataFrame, *, k: int = 5):
    """Image→text and text→image R@k per model and dataset, with chance as a dashed line."""
    r = rows[(rows.analysis == "retrieval") & rows.metric.isin([f"i2t_R@{k}", f"t2i_R@{k}"])]
    chance = rows[(rows.analysis == "retrieval") & (rows.metric == f"chance_R@{k}")].groupby("dataset")["value"].first()
    g = sns.catplot(r, x="model", y="value", hue="metric", col="dataset", kind="bar", height=3.2, aspect=1.2)
    for ax, name in zip(g.axes.flat, g.col_names):
        ax.axhline(chance[name], ls="--", c="k", lw=1, label="chance")
        ax.tick_params(axis="x", rotation=30)
    g.set_titles("{col_name}")
    g.set_axis_labels("", f"R@{k} (held out)")
    return g.figure


def perturbation_accuracy(rows: pd.DataFrame):
    """Accuracy of true vs perturbed caption per perturbation kind and model, with 95% CIs."""
    p = rows[rows.analysis == "perturbation"].copy()
    models = list(dict.fromkeys(p["model"]))
    kinds = list(dict.fromkeys(p["perturbation"]))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.8 / max(len(models), 1)
    for i, m in enumerate(models):
        q = p[p.model == m].set_index("perturbation").reindex(kinds)
        x = [j + (i - (len(models) - 1) / 2) * width for j in range(len(kinds))]
        ax.bar(x, q["value"], width, label=m,
               yerr=[q["value"] - q["ci_low"], q["ci_high"] - q["value"]], capsize=2)
    ax.axhline(0.5, ls="--", c="k", lw=1, label="chance")
    ax.set_xticks(range(len(kinds)), [k.replace("_", " ") for k in kinds], rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("true caption wins")
    ax.legend(fontsize=8, ncols=6, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    fig.tight_layout()
    return fig


def score_distributions(dists: pd.DataFrame):
    """Matched vs mismatched score distributions per model (scores are on each model's own scale)."""
    g = sns.displot(dists, x="score", hue="pair", col="model", row="dataset", kind="kde", common_norm=False,
                    facet_kws={"sharex": False, "sharey": False}, height=2.2, aspect=1.3)
    g.set_titles("{row_name} | {col_name}", size=8)
    return g.figure
