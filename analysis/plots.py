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
        ax.set_title("\n".join(textwrap.wrap(item.captions[0], width)[:3]), fontsize=8)
    fig.suptitle(ds.name, fontsize=11)
    fig.tight_layout()
    return fig
