"""A blind human-evaluation sheet for generated captions, and the statistics once people have filled it in.

**Export** (:func:`export_sheet`): given ``{system: captions}`` over the same images, one CSV row per (system,
image) with ``item, image, caption`` and an empty column per rating scale (:data:`SCALES`: relevance and fluency,
integers 1–5) plus ``comment``. Rows are shuffled with a seeded generator and the sheet carries **no system
column at all**: each row's only link to its system is an opaque item code (a random 6-character code, distinct,
seeded), resolved by the **key** file (``item, system, image_index, image``), which is written to another folder
and must not be given to raters. Every rater fills in their own copy of the sheet.

**Reading** (:func:`read_ratings`): the filled-in copies (one per rater) and the key give per-system means of
each scale and the inter-rater agreement per scale. Agreement is Krippendorff's alpha, ordinal, when the
``krippendorff`` package is installed; otherwise the **quadratic-weighted Cohen's kappa**
(:func:`sklearn.metrics.cohen_kappa_score`, ``weights="quadratic"`` over the labels 1–5) of the two raters on the
items both rated, and for more than two raters the mean of that kappa over all rater pairs (stated in the
``method`` column). A sheet with no ratings is refused: ratings are never invented.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

#: rating scales -> the instruction written into the sheet's instructions file
SCALES = {"relevance": "1-5: how well the caption describes the image (1 = not at all, 5 = completely and "
                       "only what is there)",
          "fluency": "1-5: how well-formed and natural the English is, whatever the image (1 = not English, "
                     "5 = flawless)"}
LABELS = (1, 2, 3, 4, 5)
_CODE_ALPHABET = "abcdfghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread, no e (spreadsheets read "3e45" as 3·10⁴⁵)
_FIRST = "abcdfghjkmnpqrstuvwxyz"  # a letter first, so no code is ever read as a number


def _codes(n: int, rng) -> list[str]:
    """``n`` distinct random 6-character item codes."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        code = _FIRST[int(rng.integers(len(_FIRST)))] + "".join(
            _CODE_ALPHABET[i] for i in rng.integers(len(_CODE_ALPHABET), size=5))
        if code not in seen:
            seen.add(code)
            out.append(code)
    return out


def export_sheet(systems: Mapping[str, Sequence[str]], images: Sequence[str], sheet_path, key_path, *,
                 seed: int, scales: Sequence[str] = tuple(SCALES)) -> tuple[Path, Path]:
    """Write the blind sheet (CSV: ``item, image, caption, <scales...>, comment``, rating columns empty) and, in
    another folder, the key (CSV: ``item, system, image_index, image``); plus ``<sheet>.instructions.txt`` with the
    scales. ``systems[name][i]`` is the caption of ``images[i]`` (an id or path the raters can open). Rows are
    shuffled with ``analysis.runtime.rng(seed)``. Returns ``(sheet_path, key_path)``.

    >>> import tempfile, pandas as pd
    >>> d = Path(tempfile.mkdtemp())
    >>> sheet, key = export_sheet({"xe": ["a cat", "a dog"], "clip": ["cat cat", "dog dog"]}, ["1.png", "2.png"],
    ...                           d / "raters" / "sheet.csv", d / "private" / "key.csv", seed=0)
    >>> list(pd.read_csv(sheet).columns), len(pd.read_csv(sheet)), "clip" in sheet.read_text()
    (['item', 'image', 'caption', 'relevance', 'fluency', 'comment'], 4, False)
    """
    import pandas as pd

    from analysis.runtime import rng as make_rng

    sheet_path, key_path = Path(sheet_path), Path(key_path)
    if not systems:
        raise ValueError("no systems to export: pass {system name: captions}")
    for name, caps in systems.items():
        if len(caps) != len(images):
            raise ValueError(f"system {name!r} has {len(caps)} captions for {len(images)} images")
    if sheet_path.resolve().parent == key_path.resolve().parent:
        raise ValueError(f"the key {key_path} would sit next to the sheet {sheet_path}: write it to another folder "
                         "so that raters are given the sheet's folder without the key")
    unknown = [s for s in scales if s not in SCALES]
    if unknown:
        raise ValueError(f"unknown rating scale(s) {unknown}; known: {', '.join(SCALES)}")
    rows = [(name, i) for name in systems for i in range(len(images))]
    gen = make_rng(seed)
    order = gen.permutation(len(rows))
    codes = _codes(len(rows), gen)
    sheet, key = [], []
    for code, k in zip(codes, order):
        name, i = rows[k]
        sheet.append({"item": code, "image": str(images[i]), "caption": systems[name][i],
                      **{s: "" for s in scales}, "comment": ""})
        key.append({"item": code, "system": name, "image_index": i, "image": str(images[i])})
    for p in (sheet_path, key_path):
        p.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(sheet).to_csv(sheet_path, index=False)
    pd.DataFrame(key).to_csv(key_path, index=False)
    sheet_path.with_suffix(".instructions.txt").write_text(
        "Rate every caption against its image; write one whole number per column, leave a cell empty to skip.\n"
        + "".join(f"* {s}: {SCALES[s]}\n" for s in scales)
        + "Do not change the item codes or the order of columns. Each rater fills in their own copy.\n")
    return sheet_path, key_path


def _read(sheet) -> "pd.DataFrame":
    import pandas as pd

    return sheet.copy() if isinstance(sheet, pd.DataFrame) else pd.read_csv(sheet, dtype={"item": str})


def _ratings(sheets, scales: Sequence[str]) -> "pd.DataFrame":
    """Long table ``item, rater, scale, rating`` of every filled-in cell; bad values refused with their place."""
    import pandas as pd

    if isinstance(sheets, (str, Path, pd.DataFrame)):
        sheets = [sheets]
    rows, seen_names = [], set()
    for k, sheet in enumerate(sheets):
        df = _read(sheet)
        where = sheet if not isinstance(sheet, pd.DataFrame) else f"sheet {k}"
        missing = [c for c in ("item", *scales) if c not in df.columns]
        if missing:
            raise ValueError(f"{where}: no column(s) {missing}; is it a sheet written by export_sheet?")
        default = Path(sheet).stem if isinstance(sheet, (str, Path)) else f"rater {k + 1}"
        raters = (df["rater"].where(df["rater"].notna(), default).astype(str) if "rater" in df.columns
                  else pd.Series([default] * len(df)))
        clash = set(raters) & seen_names
        if clash:
            raise ValueError(f"{where}: rater name(s) {sorted(clash)} also in an earlier sheet: give each rater's "
                             "copy its own file name or 'rater' column")
        seen_names |= set(raters)
        for s in scales:
            for item, rater, value in zip(df["item"].astype(str), raters, df[s]):
                if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
                    continue
                try:
                    x = float(value)
                except ValueError:
                    x = math.nan
                if not (math.isfinite(x) and x == int(x) and int(x) in LABELS):
                    raise ValueError(f"{where}, item {item}, {s}: {value!r} is not a whole number 1-5")
                rows.append({"item": item, "rater": rater, "scale": s, "rating": int(x)})
    out = pd.DataFrame(rows, columns=["item", "rater", "scale", "rating"])
    dup = out.duplicated(["item", "rater", "scale"])
    if dup.any():
        r = out[dup].iloc[0]
        raise ValueError(f"rater {r['rater']!r} rated item {r['item']} on {r['scale']} twice")
    return out


def agreement(matrix: np.ndarray, method: str | None = None) -> tuple[float, str]:
    """Inter-rater agreement of a ``raters × items`` matrix of ratings 1–5 (NaN = not rated):
    ``(value, method description)``. ``method``: ``"krippendorff"`` (ordinal alpha, needs the package),
    ``"kappa"`` (quadratic-weighted Cohen's kappa on the items both raters rated; the mean over rater pairs for
    more than two), or None for krippendorff when installed, else kappa. NaN with fewer than two raters.

    >>> agreement(np.array([[1, 2, 3, 4], [1, 2, 3, 5]]), "kappa")[0]  # 1 − (1/4) / (56/16) = 13/14
    0.9285714285714286
    """
    m = np.asarray(matrix, dtype=float)
    if method is None:
        try:
            import krippendorff  # noqa: F401

            method = "krippendorff"
        except ImportError:
            method = "kappa"
    if m.shape[0] < 2:
        return math.nan, "one rater: no agreement"
    if method == "krippendorff":
        import krippendorff

        return float(krippendorff.alpha(reliability_data=m, level_of_measurement="ordinal",
                                        value_domain=list(LABELS))), "Krippendorff's alpha (ordinal)"
    if method != "kappa":
        raise ValueError(f"unknown agreement method {method!r}; valid: krippendorff, kappa")
    import warnings

    from sklearn.metrics import cohen_kappa_score

    values = []
    for a, b in itertools.combinations(range(m.shape[0]), 2):
        both = ~np.isnan(m[a]) & ~np.isnan(m[b])
        if both.sum() < 2:
            continue
        with warnings.catch_warnings():  # one shared label only: kappa undefined, NaN (sklearn warns)
            warnings.simplefilter("ignore")
            values.append(cohen_kappa_score(m[a, both].astype(int), m[b, both].astype(int), weights="quadratic",
                                            labels=list(LABELS)))
    desc = "quadratic-weighted Cohen's kappa" + (f" (mean of {len(values)} rater pairs)" if m.shape[0] > 2 else "")
    return (float(np.mean(values)) if values else math.nan), desc


def read_ratings(sheets, key, *, scales: Sequence[str] = tuple(SCALES), method: str | None = None) -> dict:
    """Per-system means and inter-rater agreement from filled-in sheets (a path / DataFrame or a list of them,
    one per rater; a row's rater is its ``rater`` cell if the sheet has that column and it is filled, else the
    sheet's file name, so one sheet may also hold several raters' rows) and the key.

    Returns ``{"means": DataFrame(system, scale, mean, sd, items, ratings), "agreement": DataFrame(scale, value,
    method, raters, items), "ratings": the long table item, rater, scale, rating, system}``. An item's score is
    the mean of its raters' ratings; a system's ``mean`` and ``sd`` are over its rated items. A set of sheets
    with no rating at all is refused (ratings are never invented); items missing from the key are refused.
    """
    import pandas as pd

    long = _ratings(sheets, scales)
    if long.empty:
        names = [str(s) for s in (sheets if isinstance(sheets, (list, tuple)) else [sheets])
                 if not isinstance(s, pd.DataFrame)] or ["the sheet"]
        raise ValueError(f"no ratings yet: fill in the {', '.join(scales)} columns (whole numbers 1-5) of "
                         f"{', '.join(names)} ; ratings are never invented")
    k = _read(key)
    if not {"item", "system"} <= set(k.columns):
        raise ValueError(f"{key}: not a key file (needs item and system columns)")
    systems = dict(zip(k["item"].astype(str), k["system"]))
    unknown = sorted(set(long["item"]) - set(systems))
    if unknown:
        raise ValueError(f"{len(unknown)} rated item(s) are not in the key, e.g. {unknown[:3]}: "
                         "is this the key written with this sheet?")
    long["system"] = long["item"].map(systems)
    per_item = long.groupby(["system", "scale", "item"], as_index=False).agg(score=("rating", "mean"),
                                                                           ratings=("rating", "size"))
    means = per_item.groupby(["system", "scale"], as_index=False).agg(
        mean=("score", "mean"), sd=("score", "std"), items=("item", "size"), ratings=("ratings", "sum"))
    agree = []
    raters = sorted(long["rater"].unique())
    for s in scales:
        sub = long[long["scale"] == s]
        if sub.empty:
            agree.append({"scale": s, "value": math.nan, "method": "no ratings", "raters": 0, "items": 0})
            continue
        wide = sub.pivot_table(index="rater", columns="item", values="rating", aggfunc="first").reindex(raters)
        value, desc = agreement(wide.to_numpy(dtype=float), method)
        agree.append({"scale": s, "value": value, "method": desc, "raters": int(sub["rater"].nunique()),
                      "items": int(sub["item"].nunique())})
    return {"means": means, "agreement": pd.DataFrame(agree), "ratings": long}
