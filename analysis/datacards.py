"""Dataset cards: what each dataset is, where it came from, and its numbers.

:func:`run_datacards` is the experiment behind the *Data and models* chapter: it
loads each dataset (falling back to ``sample-photos`` with a printed reason when a
source cannot be had), and returns tidy rows of counts and caption lengths.
"""
from __future__ import annotations

import statistics

import pandas as pd

from analysis import registry, results
from analysis.data.base import DataUnavailable, Dataset
from analysis.runtime import seed_all

EMBEDDED = ["tuxpaint-stamps", "gcompris-explore", "gcompris-categories", "stamp-scenes", "stamp-scenes-unseen",
            "sample-photos"]
SMOKE_LIMIT = 24
FALLBACK = "sample-photos"


def caption_length(caption: str) -> int:
    """Number of word tokens: ``len(nltk.wordpunct_tokenize(caption))`` minus punctuation-only tokens."""
    from nltk.tokenize import wordpunct_tokenize

    return sum(any(ch.isalnum() for ch in tok) for tok in wordpunct_tokenize(caption))


def load_with_fallback(name: str, **kwargs) -> tuple[Dataset, str | None]:
    """``(dataset, None)``, or ``(sample-photos, reason)`` when ``name``'s data cannot be had. The
    fallback keeps its own name (``ds.name == "sample-photos"``): it never carries the requested one."""
    try:
        return registry.get_dataset(name, **kwargs), None
    except DataUnavailable as e:
        if name == FALLBACK:
            raise
        print(f"[{name}] unavailable, using {FALLBACK} (under its own name) instead: {e}")
        return registry.get_dataset(FALLBACK, **kwargs), str(e)


def lengths(ds: Dataset) -> pd.DataFrame:
    """One row per reference caption: dataset, item id, split, caption, length in words."""
    return pd.DataFrame([{"dataset": ds.name, "id": it.id, "split": it.split, "caption": c,
                          "words": caption_length(c)} for it in ds for c in it.captions])


def card_rows(ds: Dataset, *, seed: int, requested: str, fallback_reason: str | None,
              smoke: bool = False) -> pd.DataFrame:
    """Tidy rows of a dataset's numbers: items per split, captions, caption length, skipped images."""
    lens = [caption_length(c) for it in ds for c in it.captions]
    values = {"items": len(ds), **{f"items_{k}": v for k, v in ds.split_counts().items()},
              "captions": len(lens), "captions_per_item": len(lens) / max(len(ds), 1),
              "caption_words_mean": statistics.fmean(lens) if lens else float("nan"),
              "caption_words_median": statistics.median(lens) if lens else float("nan"),
              "skipped_images": len(ds.skipped)}
    return results.rows(({"metric": k, "value": float(v)} for k, v in values.items()),
                        run="datacards", model="", source="none", pretrained="", dataset=ds.name, split="all",
                        seed=seed, smoke=bool(smoke), requested=requested, fallback=fallback_reason or "",
                        data_source=ds.source,
                        origin=ds.origin, licence=ds.licence, caption_source=ds.caption_source)


def run_datacards(datasets: list[str] | None = None, *, smoke: bool = False, seed: int = 0):
    """Load every dataset and return ``(rows, {name: Dataset})``; smoke keeps 24 items each."""
    seed_all(seed)
    loaded, asked = {}, {}
    for name in datasets or EMBEDDED:
        ds, reason = load_with_fallback(name, limit=SMOKE_LIMIT if smoke else None)
        loaded.setdefault(ds.name, ds)  # one card per dataset, under its own name (a fallback too)
        asked.setdefault(ds.name, []).append((name, reason))
    frames = []
    for key, ds in loaded.items():
        failed = [(n, r) for n, r in asked[key] if r]
        frames.append(card_rows(ds, seed=seed, smoke=smoke, requested=", ".join(n for n, _ in asked[key]),
                                fallback_reason="; ".join(f"{n}: {r}" for n, r in failed) or None)
                      .assign(stands_in_for=", ".join(n for n, _ in failed)))
    return pd.concat(frames, ignore_index=True), loaded


def card_markdown(ds: Dataset, rows: pd.DataFrame) -> str:
    """A dataset card as Markdown, every number read from ``rows``."""
    v = rows[rows.dataset == ds.name].set_index("metric")["value"]
    fallback = rows[rows.dataset == ds.name]["fallback"].iloc[0]
    stands_in = rows[rows.dataset == ds.name].get("stands_in_for", pd.Series([""])).iloc[0]
    note = (f"\n\n**Fallback:** this card stands in for {stands_in or 'the requested data'}, whose data could not "
            f"be had ({fallback}).\n" if fallback else "")
    skipped = (f"{int(v['skipped_images'])} image(s) could not be used (undecodable, or damaged in the cache) "
               f"and were skipped "
               f"({'; '.join(f'{i}: {r}' for i, r in ds.skipped[:3])})." if ds.skipped else
               "No image failed to decode.")
    return (f"### `{ds.name}`\n\n{ds.description}\n\n"
            f"| | |\n|---|---|\n| origin | {ds.origin} |\n| licence | {ds.licence} |\n"
            f"| captions | {ds.caption_source} |\n| kind | {ds.source} data |\n"
            f"| items (train / val / test) | {int(v['items'])} ({int(v['items_train'])} / {int(v['items_val'])} / "
            f"{int(v['items_test'])}) |\n| reference captions | {int(v['captions'])} "
            f"({v['captions_per_item']:.1f} per item) |\n| words per caption | mean {v['caption_words_mean']:.1f}, "
            f"median {v['caption_words_median']:.0f} |\n\n{skipped}{note}")


def lengths_frame(loaded: dict[str, Dataset]) -> pd.DataFrame:
    """Caption-length rows for every loaded dataset."""
    return pd.concat([lengths(ds) for ds in loaded.values()], ignore_index=True)


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset: counts as integers, mean caption length to one decimal."""
    v = rows.pivot_table(index="dataset", columns="metric", values="value", sort=False)
    counts = ["items", "items_train", "items_val", "items_test", "captions", "skipped_images"]
    out = v[counts].astype(int)
    out.insert(5, "words_per_caption", v["caption_words_mean"].round(1))
    out.columns.name = None
    return out
