"""Figures that read well (issue 12): every public figure function of :mod:`analysis.plots`, called on small
constructed frames shaped like the ones the notebooks pass, has a title, labelled axes, stand-ins named as
stand-ins, and colours a colour-blind reader can tell apart; every figure cell of the book's templates carries
alt text, and the built book's ``<img>`` tags have it.

The checks read the matplotlib objects, not pixels. Exceptions are listed here with their reasons:
:data:`IMAGE_GRIDS` (panels of example images: no axes to label) and :data:`AXIS_EXCEPTIONS`.
"""
from __future__ import annotations

import inspect
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from analysis import plots  # noqa: E402
from analysis.registry import METRICS, ROOT, SCORERS  # noqa: E402

TEMPLATES = ROOT / "book" / "notebooks"

#: public functions of analysis.plots that make no figure, with what they are and where they are tested
NOT_FIGURES = {"error_bars": "error-bar lengths for matplotlib (test_error_bars_are_never_negative)"}

#: figure functions whose panels are example images, switched off as axes: nothing on them is a quantity,
#: so they need no axis labels; the figure title says what the images are
IMAGE_GRIDS = {
    "example_grid": "a grid of dataset images titled with their first reference caption",
    "caption_examples": "example test images with every system's caption printed below each",
    "recap_examples": "example test images with every captioning system's caption printed below each",
}

#: (function, axis) pairs that carry no quantity, with the reason; the test checks the axis has no ticks
AXIS_EXCEPTIONS = {
    ("bridge_differences", "y"): "one interval per panel drawn at y = 0: the y axis has no ticks and no quantity",
}

#: colormaps: none is named here; every heatmap's map is checked by simulating colour-vision deficiencies
#: (:func:`cvd_problems`), because seaborn re-centres a map into an unnamed copy
BARE_MODEL = re.compile(r"(?<![\w-])(CLIP|UNITER|LXMERT|SPICE|BLIP|ViLT)(?![\w-])")


# ----------------------------------------------------------------------------- the stand-ins, from the registry
def standin_names() -> list[str]:
    """Registry names of the embedded stand-ins (scorers and metrics whose summary says "stand-in")."""
    return [n for reg in (SCORERS, METRICS) for n in reg.names()
            if not n.endswith(":") and "stand-in" in reg.entry(n).summary]


STANDIN = re.compile("(?<![\\w+-])(" + "|".join(re.escape(n) for n in sorted(standin_names(), key=len, reverse=True))
                     + ")(?![\\w+-])")


def test_the_registry_has_stand_ins_to_check():
    assert {"clip-mini", "uniter-mini", "lxmert-mini", "sg-f1"} <= set(standin_names())


# ----------------------------------------------------------------------------- small inputs shaped like the pages'
CLIP = "clip-mini (CLIP-style stand-in)"
UNITER = "uniter-mini (UNITER-style stand-in)"
RNG = np.random.default_rng(0)


def _images(tmp: Path, ids) -> dict:
    """Tiny PNG files, one per image id."""
    from PIL import Image

    paths = {}
    for i, name in enumerate(ids):
        p = tmp / f"{name}.png"
        Image.new("RGB", (16, 16), (40 * i % 255, 120, 200)).save(p)
        paths[name] = p
    return paths


class _Item:
    def __init__(self, i):
        self.captions = [f"a small red fish and a big green apple number {i}"]
        self._i = i

    def image(self):
        return np.full((12, 12, 3), 30 * self._i % 255, dtype=np.uint8)


class _Dataset:
    name = "stamp-scenes"

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return _Item(i)


def _caption_lengths(tmp):
    return plots.caption_lengths(pd.DataFrame({"words": RNG.integers(2, 50, 60),
                                               "dataset": ["stamp-scenes", "tuxpaint-stamps", "gcompris"] * 20}))


def _retrieval_rows():
    rows = []
    for d in ("stamp-scenes", "tuxpaint-stamps"):
        for lab in (CLIP, UNITER):
            for m in ("i2t_R@5", "t2i_R@5"):
                v = RNG.uniform(0.2, 0.8)
                rows.append(dict(analysis="retrieval", metric=m, dataset=d, label=lab, value=v, ci_low=v - 0.1,
                                 ci_high=v + 0.1, chance=0.1, heldout="held-out stamps"))
    return pd.DataFrame(rows)


def _perturbation_rows():
    rows = []
    for d in ("stamp-scenes", "stamp-scenes-unseen"):
        for lab, trained in ((CLIP, "no"), ("clip-mini+neg (NegCLIP-style stand-in, trained on perturbation "
                                            "negatives)", "yes")):
            for kind in ("relation_swap", "object_swap"):
                v = RNG.uniform(0.4, 0.9)
                rows.append(dict(analysis="perturbation", dataset=d, label=lab, perturbation=kind, value=v,
                                 ci_low=v - 0.1, ci_high=v + 0.05, trained_on_perturbations=trained,
                                 heldout="new combinations"))
    return pd.DataFrame(rows)


def _dists():
    rows = []
    for d in ("stamp-scenes", "tuxpaint-stamps"):
        for lab in (CLIP, UNITER):
            for pair, mu in (("matched", 1.0), ("mismatched", 0.0)):
                rows += [dict(dataset=d, label=lab, pair=pair, score=s) for s in RNG.normal(mu, 0.5, 30)]
    return pd.DataFrame(rows)


def _measure_rows():
    from analysis.measures import LADDER

    rows = []
    for lab in ("BLEU-4", "sg-f1 (SPICE-style stand-in)", f"CLIP-S ({CLIP})"):
        for a, b in zip(LADDER, LADDER[1:]):
            rows.append(dict(analysis="ladder", metric="ordered", condition=f"{a} > {b}", label=lab,
                             value=RNG.uniform()))
        for c in ("broken > fluent", "degenerate > fluent"):
            rows.append(dict(analysis="figure1", metric="share", condition=c, label=lab, value=RNG.uniform()))
    return pd.DataFrame(rows)


def _curves():
    rows = []
    for system in ("cider-d", "clip-mini"):
        for seed in (0, 1):
            for step in range(0, 30, 5):
                rows.append(dict(system=system, seed=seed, step=step, reward_mean=RNG.uniform(),
                                 greedy_cider_d=RNG.uniform(0, 3), greedy_length=RNG.uniform(5, 9)))
    return pd.DataFrame(rows)


def _examples(tmp):
    ex = pd.DataFrame({"references": ["a fish", "two apples"], "xe": ["a fish", "an apple"],
                       "clip-mini": ["a big fish", ""]}, index=["img-1", "img-2"])
    return ex, _images(tmp, ex.index)


def _recap_examples(tmp):
    ex = pd.DataFrame({"nn": ["a fish", "two apples"], "recap": ["a big fish", "apples"]}, index=["a", "b"])
    return plots.recap_examples(ex, _images(tmp, ex.index), scorer_label=CLIP, lm_label="SmolLM2-135M-Instruct")


def _cross():
    systems = ["xe", "cider-d", "clip-mini", "uniter-mini/probability"]
    scorers = ["clip-mini", "uniter-mini", "blind"]
    raw = pd.DataFrame(RNG.uniform(size=(4, 3)), index=systems, columns=scorers)
    return plots.cross_heatmap((raw - raw.mean()) / raw.std(), raw)


def _decoding():
    rows = []
    for scorer in ("clip-mini", "blind"):
        for prior, lab in (("xe", "XE captioner (trained here, in-domain)"),
                           ("smollm2", "SmolLM2-135M-Instruct (open English, image-blind)")):
            for w in (0, 0.2, 1):
                rows.append(dict(scorer=scorer, prior=prior, prior_label=lab, weight=w, score=RNG.uniform(),
                                 prior_logprob=-RNG.uniform(5, 30), tokens=8))
    return plots.decoding_tradeoff(pd.DataFrame(rows))


def _cosines():
    rows = []
    for setting, m in (("in-domain", "procrustes"), ("transfer", "procrustes")):
        for stage in ("before", "after"):
            for pair, mu in (("true pair", 0.4), ("random pair", 0.1)):
                rows += [dict(setting=setting, stage=stage, pair=pair, cosine=c, map=m if stage == "after"
                              else "unaligned", dataset="tuxpaint-stamps", label=CLIP)
                         for c in RNG.normal(mu, 0.1, 25)]
    return plots.realign_cosines(pd.DataFrame(rows))


def _realign_retrieval():
    rows = []
    for setting in ("in-domain", "transfer"):
        for k in (1, 5):
            for m in ("unaligned", "procrustes", "lstsq"):
                for d in ("image→text", "text→image"):
                    v = RNG.uniform(0.1, 0.9)
                    rows.append(dict(setting=setting, k=k, map=m, direction=d, value=v, ci_low=v - 0.1,
                                     ci_high=v + 0.1, chance=0.05 * k, n=40, label=CLIP))
    return plots.realign_retrieval(pd.DataFrame(rows))


def _sweep():
    rows = []
    for metric in ("i2t_R@1", "t2i_R@1", "i2t_R@5"):
        for method in ("procrustes", "lstsq"):
            for seed in (0, 1):
                for n_fit in (16, 64, 256):
                    rows.append(dict(metric=metric, method=method, seed=seed, n_fit=n_fit, value=RNG.uniform(),
                                     n=40, label=CLIP))
    return plots.realign_sweep(pd.DataFrame(rows))


def _recap_rows():
    rows = []
    for metric in ("cider-d", "sg-f1", "clip-s:clip-mini", "aclip-s:clip-mini"):
        for system in ("nn", "lm", "recap"):
            v = RNG.uniform()
            rows.append(dict(analysis="summary", metric=metric, system=system, value=v, low=v - 0.1, high=v + 0.1))
        for contrast in ("recap − lm", "recap − nn"):
            v = RNG.normal(0, 0.1)
            rows.append(dict(analysis="difference", metric=metric, contrast=contrast, value=v, low=v - 0.1,
                             high=v + 0.1, p_holm=RNG.uniform(0, 0.1)))
    return pd.DataFrame(rows)


def _bridge_rows():
    rows = []
    for label in ("CIDEr-D", "sg-f1 (SPICE-style stand-in)", "CLIP-S (clip-mini)", "words per caption"):
        v = RNG.normal(0, 0.1)
        rows.append(dict(analysis="difference", label=label, value=v, low=v - 0.1, high=v + 0.1,
                         p_holm=RNG.uniform(0, 0.1), value_b=RNG.uniform(), system="aclip-s:clip-mini",
                         baseline="clip-s:clip-mini"))
    return pd.DataFrame(rows)


def _speed():
    base = dict(targets="reference", tolerance=0.0, reference="procrustes", label=CLIP, split="test",
                stopping_split="val")
    rows = [dict(approach="procrustes", kind="closed-form", train_seconds=0.01, ratio=1.0, reached_target=True,
                 **{"i2t_R@1": 0.56}),
            dict(approach="lstsq", kind="closed-form", train_seconds=0.009, ratio=0.8, reached_target=False,
                 **{"i2t_R@1": 0.50}),
            dict(approach="adam-linear", kind="gradient", train_seconds=2.4, ratio=240.0, reached_target=False,
                 **{"i2t_R@1": 0.50}),
            dict(approach="adam-mlp", kind="gradient", train_seconds=9.0, ratio=900.0, reached_target=True,
                 **{"i2t_R@1": 0.57}),
            dict(approach="xe-captioner", kind="captioner", train_seconds=170.0, ratio=17000.0,
                 reached_target=None, **{"i2t_R@1": np.nan})]
    table = pd.DataFrame([{**base, **r} for r in rows])
    curves = pd.DataFrame([dict(approach=a, seconds=s, eval_r1=RNG.uniform(0.3, 0.6))
                           for a in ("adam-linear", "adam-mlp") for s in (0.1, 0.5, 1.0, 2.0)])
    return plots.speed_comparison(table, curves)


TAU_LABELS = ["BLEU-4", f"CLIP-S ({CLIP})", f"aCLIP-S ({CLIP}; in-domain procrustes map)"]
TAU_METRICS = ["bleu-4", "clip-s:clip-mini", "aclip-s:clip-mini"]


def _tau_rows():
    rows = []
    for d, kind in (("flickr8k-expert", "human"), ("scene-ladder", "rule-made")):
        for lab, m in zip(TAU_LABELS, TAU_METRICS):
            v = RNG.uniform(10, 60)
            rows.append(dict(run="correlation", dataset=d, label=lab, metric=m, value=v, low=v - 5, high=v + 5,
                             judgement_kind=kind, variant="b"))
    return pd.DataFrame(rows)


def _tau_diffs():
    return pd.DataFrame([dict(label=f"aCLIP-S − CLIP-S ({CLIP})", dataset="scene-ladder",
                              judgement_kind="rule-made", variant="b", value=1.5, low=-0.5, high=3.0, p_holm=0.2)])


def _noise():
    rows = []
    for kind, sigmas in (("image", (0, 0.05, 0.1)), ("embedding", (0, 0.5, 1.0))):
        for lab in TAU_LABELS[1:]:
            for s in sigmas:
                v = RNG.uniform(30, 60)
                rows.append(dict(noise=kind, sigma=s, value=v, low=v - 5, high=v + 5, top_mean=RNG.uniform(),
                                 label=lab, embedding_stage="encoder" if kind == "embedding" else None,
                                 variant="b", dataset="scene-ladder", judgement_kind="rule-made"))
    return pd.DataFrame(rows)


#: (function, case) -> builder(tmp_path) -> Figure: every public figure function, some with an empty case
CASES = {
    ("caption_lengths", "datasets"): _caption_lengths,
    ("example_grid", "five images"): lambda tmp: plots.example_grid(_Dataset(), n=4, seed=0),
    ("retrieval_bars", "two datasets"): lambda tmp: plots.retrieval_bars(_retrieval_rows(), k=5),
    ("perturbation_accuracy", "two datasets"): lambda tmp: plots.perturbation_accuracy(_perturbation_rows()),
    ("score_distributions", "grid"): lambda tmp: plots.score_distributions(_dists()),
    ("measure_orderings", "ladder"): lambda tmp: plots.measure_orderings(_measure_rows()),
    ("scst_curves", "two systems"): lambda tmp: plots.scst_curves(_curves()),
    ("xe_curve", "loss"): lambda tmp: plots.xe_curve(pd.DataFrame({"step": range(10), "loss": np.linspace(5, 2, 10)})),
    ("caption_examples", "two images"): lambda tmp: plots.caption_examples(*_examples(tmp)),
    ("cross_heatmap", "matrix"): lambda tmp: _cross(),
    ("decoding_tradeoff", "two scorers"): lambda tmp: _decoding(),
    ("realign_cosines", "two settings"): lambda tmp: _cosines(),
    ("realign_retrieval", "two settings"): lambda tmp: _realign_retrieval(),
    ("realign_sweep", "three metrics"): lambda tmp: _sweep(),
    ("recap_means", "four metrics"): lambda tmp: plots.recap_means(_recap_rows(), scorer_label=CLIP),
    ("recap_differences", "four metrics"): lambda tmp: plots.recap_differences(_recap_rows()),
    ("bridge_differences", "four measures"): lambda tmp: plots.bridge_differences(_bridge_rows()),
    ("bridge_differences", "empty"): lambda tmp: plots.bridge_differences(_bridge_rows().iloc[:0]),
    ("recap_examples", "two images"): _recap_examples,
    ("speed_comparison", "five approaches"): lambda tmp: _speed(),
    ("tau_intervals", "two sets"): lambda tmp: plots.tau_intervals(_tau_rows()),
    ("tau_intervals", "no values"): lambda tmp: plots.tau_intervals(_tau_rows().assign(value=np.nan)),
    ("tau_differences", "one comparison"): lambda tmp: plots.tau_differences(_tau_diffs()),
    ("tau_differences", "empty"): lambda tmp: plots.tau_differences(_tau_diffs().iloc[:0]),
    ("noise_curves", "two kinds"): lambda tmp: plots.noise_curves(_noise()),
    ("noise_curves", "empty"): lambda tmp: plots.noise_curves(_noise().iloc[:0]),
}


def public_functions() -> set[str]:
    """The public functions defined in analysis.plots (not imported into it)."""
    return {n for n, f in inspect.getmembers(plots, inspect.isfunction)
            if f.__module__ == plots.__name__ and not n.startswith("_")}


def test_every_public_function_of_plots_is_checked():
    """A new figure function cannot skip the checks: each public function is a case here or listed as no figure."""
    figures = {name for name, _ in CASES}
    assert public_functions() == figures | set(NOT_FIGURES), (
        f"add a case to CASES in tests/test_plots.py for: {sorted(public_functions() - figures - set(NOT_FIGURES))}; "
        f"stale entries: {sorted((figures | set(NOT_FIGURES)) - public_functions())}")


def test_error_bars_are_never_negative():
    q = pd.DataFrame({"value": [0.5, 0.2], "ci_low": [0.4, 0.2000001], "ci_high": [0.7, 0.1999999]})
    low, high = plots.error_bars(q)
    assert list(low.round(6)) == [0.1, 0.0] and list(high.round(6)) == [0.2, 0.0]


# ----------------------------------------------------------------------------- the checks
def _is_colorbar(ax) -> bool:
    return ax.get_label() == "<colorbar>" or hasattr(ax, "_colorbar")


def _has_data(ax) -> bool:
    return bool(ax.lines or ax.patches or ax.collections or ax.images)


def _data_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible() and not _is_colorbar(ax) and _has_data(ax)]


def _texts(fig) -> list[str]:
    """Every visible, non-empty text of the figure (titles, labels, tick labels, legends, annotations)."""
    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _legend_texts(fig) -> list[str]:
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    return [t.get_text() for leg in legends if leg is not None for t in [*leg.get_texts(), leg.get_title()]
            if t.get_text().strip()]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def title_problems(fig) -> list[str]:
    if (fig.get_suptitle() or "").strip():
        return []
    panels = _data_axes(fig) or [ax for ax in fig.axes if ax.get_visible() and ax.texts]  # an empty figure's note
    if not panels or any(not ax.get_title().strip() for ax in panels):
        return ["no figure title (suptitle) and not every panel has a title"]
    return []


def _labelled(ax, axis: str, fig) -> bool:
    """The axis names its quantity: on itself, on an axes it is shared with, or as the figure's sup-label."""
    get = f"get_{axis}label"
    if getattr(ax, get)().strip():
        return True
    group = ax.get_shared_x_axes() if axis == "x" else ax.get_shared_y_axes()
    if any(getattr(sib, get)().strip() for sib in group.get_siblings(ax)):
        return True
    sup = fig.get_supxlabel() if axis == "x" else fig.get_supylabel()
    return bool((sup or "").strip())


def label_problems(name: str, fig) -> list[str]:
    out = []
    for i, ax in enumerate(_data_axes(fig)):
        if name in IMAGE_GRIDS:
            if ax.axison:
                out.append(f"panel {i}: an image-grid panel shows its axes (switch them off or label them)")
            continue
        if not ax.axison:
            out.append(f"panel {i}: axes switched off on a panel with data (not a listed image grid)")
            continue
        for axis in ("x", "y"):
            if (name, axis) in AXIS_EXCEPTIONS:
                ticks = ax.get_xticks() if axis == "x" else ax.get_yticks()
                if len(ticks):
                    out.append(f"panel {i}: {axis} axis is listed as carrying no quantity but has ticks")
                continue
            if not _labelled(ax, axis, fig):
                out.append(f"panel {i} ({ax.get_title()!r}): no {axis} label")
    return out


def standin_problems(fig) -> list[str]:
    """A legend entry naming a stand-in says "stand-in"; any other text naming one has "stand-in" in the same
    text, its panel's title/labels/legend, or the figure's title; no bare CLIP/UNITER/LXMERT/SPICE anywhere."""
    out = [f"legend entry names a stand-in without saying so: {t!r}" for t in map(_one_line, _legend_texts(fig))
           if STANDIN.search(t) and "stand-in" not in t]
    figure_context = " ".join([fig.get_suptitle() or "", fig.get_supxlabel() or "", fig.get_supylabel() or "",
                               *_legend_texts(fig)])
    for ax in fig.axes:
        own = [t.get_text() for t in ax.findobj(Text) if t.get_visible() and t.get_text().strip()]
        context = " ".join([ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), figure_context])
        for t in map(_one_line, own):
            if STANDIN.search(t) and "stand-in" not in t and "stand-in" not in _one_line(context):
                out.append(f"text names a stand-in and nothing near it says so: {t!r}")
    out += [f"bare model name (say which stand-in or published checkpoint): {t!r}"
            for t in map(_one_line, _texts(fig)) if BARE_MODEL.search(t)]
    return out


PALETTE_RGB = np.array(sns.color_palette(plots.PALETTE))


def _rgba(colors) -> np.ndarray:
    """The visible (alpha > 0) colours of one colour or an array of them, as RGBA rows."""
    arr = matplotlib.colors.to_rgba_array(colors)
    return arr[arr[:, 3] > 0]


def _allowed(rgb) -> bool:
    """A colour of the colour-blind palette, or a neutral grey (black and white included)."""
    r, g, b = rgb[:3]
    neutral = abs(r - g) < 0.02 and abs(g - b) < 0.02
    return neutral or bool(np.min(np.abs(PALETTE_RGB - np.asarray(rgb[:3])).max(axis=1)) < 0.02)


def _artist_colors(ax) -> list:
    """Every drawn colour of the panel's lines, markers, patches and (non-colormapped) collections."""
    colors = []
    for line in ax.lines:
        colors += [line.get_color(), line.get_markerfacecolor(), line.get_markeredgecolor()]
    for p in ax.patches:
        if p.get_fill():
            colors.append(p.get_facecolor())
        if p.get_linewidth() > 0:
            colors.append(p.get_edgecolor())
    for c in ax.collections:
        if c.get_array() is not None:  # colour-mapped: checked as a colormap
            continue
        colors += list(_rgba(c.get_facecolors())) + list(_rgba(c.get_edgecolors()))
    return [rgba for col in colors for rgba in _rgba(col)]


# Machado, Oliveira & Fernandes (2009) simulation matrices, severity 1, in linear RGB
CVD = {
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}


def _lab(rgb: np.ndarray, matrix=None) -> np.ndarray:
    """CIELAB (D65) of sRGB colours, optionally as seen through a CVD simulation matrix."""
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    if matrix is not None:
        lin = np.clip(lin @ matrix.T, 0, 1)
    xyz = lin @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def cvd_problems(cmap, *, step: float = 0.25, min_delta_e: float = 10.0) -> list[str]:
    """Colour-blind check of a colormap: any two of its colours a quarter of the range apart stay at least
    ``min_delta_e`` (CIELAB ΔE76) apart for normal vision and under simulated protanopia, deuteranopia and
    tritanopia, so the reader can still read the scale."""
    t = np.linspace(0, 1, 41)
    rgb = np.asarray(cmap(t))[:, :3]
    far = np.abs(t[:, None] - t[None, :]) >= step - 1e-9
    out = []
    for name, matrix in {"normal vision": None, **CVD}.items():
        lab = _lab(rgb, matrix)
        d = np.linalg.norm(lab[:, None, :] - lab[None, :, :], axis=-1)
        if d[far].min() < min_delta_e:
            i, j = np.argwhere(far & (d == d[far].min()))[0]
            out.append(f"{cmap.name}: under {name}, values {t[i]:.2f} and {t[j]:.2f} look alike "
                       f"(ΔE {d[i, j]:.1f} < {min_delta_e})")
    return out


def test_the_colour_blind_check_tells_a_safe_map_from_a_red_green_one():
    """The checker itself: ColorBrewer's blue–red ``RdBu`` (the heatmaps' map) and ``viridis`` pass; the
    red–yellow–green ``RdYlGn`` fails (its red and green sides merge for red–green deficiencies), and so,
    narrowly, does seaborn's paler ``vlag`` (light blue and light red just either side of the centre, under
    protanopia)."""
    assert cvd_problems(matplotlib.colormaps["RdBu"]) == []
    assert cvd_problems(matplotlib.colormaps["viridis"]) == []
    assert any("deuteranopia" in p or "protanopia" in p for p in cvd_problems(matplotlib.colormaps["RdYlGn"]))
    assert any("protanopia" in p for p in cvd_problems(sns.color_palette("vlag", as_cmap=True)))


def colour_problems(fig) -> list[str]:
    out = []
    for i, ax in enumerate(_data_axes(fig)):
        for col in _artist_colors(ax):
            if not _allowed(col):
                out.append(f"panel {i}: colour {matplotlib.colors.to_hex(col)} is neither in seaborn's "
                           f"{plots.PALETTE!r} palette nor a grey")
        for c in ax.collections:
            if isinstance(c, QuadMesh) or c.get_array() is not None:
                out += [f"panel {i}: {p}" for p in cvd_problems(c.get_cmap())]
    return sorted(set(out))


@pytest.fixture(scope="module")
def tmp_images(tmp_path_factory):
    return tmp_path_factory.mktemp("plot-images")


@pytest.mark.parametrize("name,case", list(CASES), ids=[f"{n}[{c}]" for n, c in CASES])
def test_figure_reads_well(name, case, tmp_images):
    """Title, labelled axes, stand-ins named as such, colour-blind-safe colours; every problem is listed."""
    fig = CASES[(name, case)](tmp_images)
    try:
        assert isinstance(fig, matplotlib.figure.Figure), f"{name} returns {type(fig).__name__}, not a Figure"
        fig.canvas.draw()  # fills automatic tick labels, so they are checked too
        problems = (title_problems(fig) + label_problems(name, fig) + standin_problems(fig)
                    + colour_problems(fig))
        assert not problems, f"{name} [{case}]:\n  " + "\n  ".join(problems)
    finally:
        plt.close(fig)


def test_the_checks_catch_a_figure_that_reads_badly():
    """The checks themselves: an untitled, unlabelled figure in default colours naming a bare stand-in fails."""
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], color="tab:red", label="clip-mini")
    ax.legend()
    try:
        fig.canvas.draw()
        assert title_problems(fig) and label_problems("made_up", fig)
        assert any("clip-mini" in p for p in standin_problems(fig))
        assert colour_problems(fig)
    finally:
        plt.close(fig)


def test_bare_stand_in_names_get_their_labels():
    assert plots._standin("CLIP-S (clip-mini)") == f"CLIP-S ({CLIP})"
    assert plots._standin(CLIP) == CLIP
    assert plots._standin("clip-mini+neg").startswith("clip-mini+neg (NegCLIP-style stand-in")
    assert plots._standin("aclip-s:clip-mini") == f"aclip-s:{CLIP}"
    assert plots._standin("xe") == "xe" and plots._standin("blind") == "blind"


# ----------------------------------------------------------------------------- alt text (templates and the built book)
FIGURE_CALL = re.compile(r"\bplots\.(\w+)\(|display\(fig\b|plt\.(?:subplots|figure)\(")


def figure_cells(nb: dict) -> list[tuple[int, dict]]:
    """``(index, cell)`` of the code cells that display a figure: they call a figure function of
    :mod:`analysis.plots`, make a matplotlib figure, or display one."""
    figs = public_functions() - set(NOT_FIGURES)
    out = []
    for i, cell in enumerate(nb["cells"]):
        src = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
        if any(m.group(1) in figs if m.group(1) else True for m in FIGURE_CALL.finditer(src)):
            out.append((i, cell))
    return out


def test_figure_cells_are_found_in_the_templates():
    """The detector is not vacuous: the templates display the book's figures."""
    found = {p.stem: len(figure_cells(json.loads(p.read_text()))) for p in TEMPLATES.glob("*.ipynb")}
    assert sum(found.values()) >= 20 and found["realign_bridge"] >= 2, found


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.ipynb")))
def test_every_figure_cell_has_alt_text(template):
    """myst-nb takes an image output's alt text from the cell metadata ``{"mystnb": {"image": {"alt": …}}}``
    (``render_image_options``, cell key ``image``); each figure cell says what its figure shows."""
    nb = json.loads((TEMPLATES / template).read_text())
    missing, vague = [], []
    for i, cell in figure_cells(nb):
        alt = str(cell["metadata"].get("mystnb", {}).get("image", {}).get("alt", "")).strip()
        if not alt:
            missing.append(i)
        elif len(alt.split()) < 6:
            vague.append((i, alt))
    assert not missing, (f"{template}: figure cells {missing} have no alt text: add cell metadata "
                         '{"mystnb": {"image": {"alt": "<what the figure shows>"}}}')
    assert not vague, f"{template}: alt text too short to describe the figure: {vague}"


def test_alt_texts_name_no_bare_model():
    for p in TEMPLATES.glob("*.ipynb"):
        for i, cell in figure_cells(json.loads(p.read_text())):
            alt = cell["metadata"].get("mystnb", {}).get("image", {}).get("alt", "")
            assert not BARE_MODEL.search(alt), (p.name, i, alt)


class _Images(HTMLParser):
    """The ``<img>`` tags of one HTML page as attribute dicts."""

    def __init__(self):
        super().__init__()
        self.images = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))


def _shown_alts(notebook: Path) -> set[str]:
    """The alt texts of an executed notebook's cells that have an image output."""
    nb = json.loads(notebook.read_text())
    return {_one_line(str(c["metadata"].get("mystnb", {}).get("image", {}).get("alt", "")))
            for c in nb["cells"] if c["cell_type"] == "code"
            and any(k.startswith("image/") for o in c.get("outputs", []) for k in o.get("data", {}))}


def test_built_book_images_carry_the_templates_alt_text(smoke_book):
    """In the smoke book, every image has a real alt text (not the file name Sphinx falls back to), and every
    executed figure cell's alt text (from its template, through papermill) is on the built pages."""
    root, proc = smoke_book
    html = root / "_build" / "html"
    assert html.is_dir(), f"no built book at {html}: {proc.stderr[-2000:]}"
    alts, bad = set(), []
    for page in html.rglob("*.html"):
        if "_static" in page.parts:
            continue
        parser = _Images()
        parser.feed(page.read_text(encoding="utf-8"))
        for img in parser.images:
            alt = (img.get("alt") or "").strip()
            if not alt or re.search(r"\.(png|jpe?g|svg|gif)$", alt) or alt == img.get("src"):
                bad.append((page.relative_to(html).as_posix(), img.get("src"), alt))
            alts.add(_one_line(alt))
    assert not bad, f"images without a real alt text: {bad[:10]}"
    executed = sorted((root / "book" / "generated").glob("*.ipynb"))  # the pages the book is built from
    wanted = set().union(*(_shown_alts(p) for p in executed)) if executed else set()
    assert wanted and "" not in wanted, f"an executed figure cell has no alt text ({len(executed)} notebooks)"
    assert wanted <= alts, f"alt texts missing from the built pages: {sorted(wanted - alts)}"


def test_plots_doctests():
    import doctest

    result = doctest.testmod(plots, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
