"""Human judgements of image captions, read from their published files.

Each loader returns a pandas DataFrame of tidy *rating rows* (one row per rating as
the file records it, never a per-pair mean) with at least the columns

``dataset, image, caption_id, caption, rater, score, path, references``

``path`` is the image file (``None`` with ``images=False``); ``references`` is a
tuple of the image's reference captions (the same tuple on every row of an image).
Ratings that are missing in the file are kept as NaN; a correlation over them drops
them pair-wise, as the reference code does (``scipy.stats.kendalltau(...,
nan_policy='omit')``). The Kendall-tau harness over these rows is planned for the
metrics chapter and not in the package yet; until then, call scipy on the rows. ``df.attrs`` carries the card: ``name``, ``source``,
``licence``, ``origin``, ``rating_unit``, ``files`` (sha256 of each file read),
``skipped`` (``(image, reason)`` for images missing or undecodable, whose rows are
removed) and ``dropped`` (rows removed by protocol, with the rule).

``limit`` keeps the first ``limit`` distinct images in file order, with all their
rows, so references and per-image groups stay whole.

Flickr8k (Hodosh et al. 2013; ``Flickr8k_text.zip``), root ``$STUDY_DATA/flickr8k``
---------------------------------------------------------------------------
The text files may sit in the root or in ``<root>/Flickr8k_text/``; the images are
the same ``Flicker8k_Dataset/`` folder as for ``flickr8k-karpathy``.

* ``Flickr8k.token.txt``: ``<image>#<k>\\t<caption>``, k = 0..4, one line per caption.
* ``ExpertAnnotations.txt``: ``<image>\\t<caption id>\\t<s1>\\t<s2>\\t<s3>``, three expert
  scores 1-4 (1: does not describe the image ... 4: describes it). The caption id
  (``<other image>#<k>``) names a caption from ``Flickr8k.token.txt``, usually written
  for another image. 5,664 pairs, 16,992 ratings.
* ``CrowdFlowerAnnotations.txt``: ``<image>\\t<caption id>\\t<fraction yes>\\t<n yes>\\t<n no>``
  (the README calls column 3 "percent of Yeses"; it is a fraction 0-1). At least 3
  binary judgements per pair; about 48k pairs over 1k images.

THumB 1.0 (Kasai et al. 2022; github.com/jungokasai/THumB), root ``$STUDY_DATA/thumb``
-------------------------------------------------------------------------------
* ``mscoco_THumB-1.0.jsonl`` (in the root, ``mscoco/`` or ``THumB/mscoco/``): one JSON
  object per (image, system)::

    {"SYS": "Up-Down", "seg_id": "974", "set_id": 5, "hyp": "A group of people ...",
     "image": "COCO_val2014_000000000974.jpg", "P": 4.0, "R": 3.0,
     "Fl": -0.0, "Inc": -0.0, "Con": -0.0, "human_score": 3.5}

  500 Karpathy-test images x 5 systems (Up-Down, Unified-VLP, VinVL-base,
  VinVL-large, Human) = 2,500 rows. P/R: precision/recall 1-5; Fl/Con/Inc:
  fluency/conciseness/inclusive-language penalties (<= 0);
  ``human_score = (P + R) / 2 + Fl + Con + Inc``. One adjudicated score per row.
  Field names were checked against the file itself (repository index, commit
  95195a2): the README's table says ``Flu`` but the data uses ``Fl``; both are read.
* References: ``mscoco_references.json`` next to it, JSON *lines* ``{"seg_id": "974",
  "refs": [4 captions]}`` (the COCO captions other than the one scored as "Human").
  This file's name and keys come from third-party evaluation code that reads it
  (not from the THumB README, which names it wrongly), so they are the most likely
  layout, not a verified one. Fallback: the Karpathy ``dataset_coco.json`` (from the
  THumB root or the ``coco-karpathy`` root), minus the caption matching the
  ``Human`` hypothesis.
* Images: COCO ``val2014`` files, looked for in ``image_dir``, ``<root>/val2014``,
  ``<root>/images``, ``<root>``, then the ``coco-karpathy`` root's ``val2014/``.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterable

import pandas as pd

from analysis.data.base import DataUnavailable, image_ok
from analysis.data.karpathy import data_root, find_file, find_folder, how_to_supply, read_karpathy

BASE_COLUMNS = ["dataset", "image", "caption_id", "caption", "rater", "score", "path", "references"]
FLICKR8K_TEXT = ("", "Flickr8k_text")
FLICKR8K_IMAGES = ("Flicker8k_Dataset", "Flickr8k_Dataset", "Images")
FLICKR8K_GET = "The text files are in Flickr8k_text.zip (Hodosh et al. 2013, the Flickr8k request form)."
FLICKR8K_LICENCE = "research use only (Flickr8k terms, Hodosh et al. 2013); images under their Flickr licences"
THUMB_DIRS = ("", "mscoco", "THumB/mscoco")
THUMB_GET = "The file is in the THumB repository (github.com/jungokasai/THumB, folder mscoco/)."
NA_STRINGS = {"", "na", "nan", "none", "null"}


# --------------------------------------------------------------------------- parsing (pure)
def number(text: str) -> float:
    """``float(text)``; empty / ``NA`` / ``nan`` give NaN; anything else non-numeric raises."""
    return math.nan if text.strip().lower() in NA_STRINGS else float(text)


def tsv_rows(path: Path, n_fields: int) -> list[list[str]]:
    """The tab-separated rows of ``path`` (blank lines skipped), each exactly ``n_fields`` long."""
    rows = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != n_fields:
            raise ValueError(f"{path}:{i}: expected {n_fields} tab-separated fields, found {len(fields)}: {line!r}")
        rows.append(fields)
    return rows


def read_tokens(path: str | Path) -> dict[str, str]:
    """``Flickr8k.token.txt`` -> ``{caption id: caption}``, e.g. ``{"x.jpg#0": "A dog runs ."}``."""
    out = {}
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        cid, sep, caption = line.partition("\t")
        if not sep or "#" not in cid:
            raise ValueError(f"{path}:{i}: expected '<image>#<k>\\t<caption>', found {line!r}")
        out[cid.strip()] = caption.strip()
    return out


def image_of(caption_id: str) -> str:
    """``"1056338697_4f7d7ce270.jpg#2"`` -> ``"1056338697_4f7d7ce270.jpg"``."""
    return caption_id.rsplit("#", 1)[0]


def captions_by_image(tokens: dict[str, str]) -> dict[str, list[str]]:
    """``{image: [its captions in #k order]}`` from :func:`read_tokens` output."""
    out: dict[str, list[tuple[int, str]]] = {}
    for cid, caption in tokens.items():
        img, _, k = cid.rpartition("#")
        out.setdefault(img, []).append((int(k) if k.isdigit() else 0, caption))
    return {img: [c for _, c in sorted(caps)] for img, caps in out.items()}


def read_expert(path: str | Path) -> list[dict]:
    """``ExpertAnnotations.txt`` -> ``[{"image", "caption_id", "scores": [s1, s2, s3]}]`` (NaN kept)."""
    return [{"image": r[0].strip(), "caption_id": r[1].strip(), "scores": [number(s) for s in r[2:5]]}
            for r in tsv_rows(path, 5)]


def read_crowdflower(path: str | Path) -> list[dict]:
    """``CrowdFlowerAnnotations.txt`` -> ``[{"image", "caption_id", "fraction_yes", "n_yes", "n_no"}]``.

    Raises ``ValueError`` if column 3 disagrees with ``n_yes / (n_yes + n_no)``.
    """
    out = []
    for r in tsv_rows(path, 5):
        frac, n_yes, n_no = number(r[2]), int(r[3]), int(r[4])
        if n_yes + n_no and not math.isnan(frac) and abs(frac - n_yes / (n_yes + n_no)) > 1e-4:
            raise ValueError(f"{path}: {r[0]} {r[1]}: fraction yes {frac} != {n_yes}/({n_yes}+{n_no})")
        out.append({"image": r[0].strip(), "caption_id": r[1].strip(), "fraction_yes": frac,
                    "n_yes": n_yes, "n_no": n_no})
    return out


def read_jsonl(path: str | Path) -> list[dict]:
    """One JSON object per non-blank line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def normalise(caption: str) -> str:
    """Lower case, letters and digits only, single spaces: for matching a caption across releases."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", caption.lower()).split())


def without(refs: Iterable[str], captions: Iterable[str]) -> tuple[str, ...]:
    """``refs`` minus any that match one of ``captions`` after :func:`normalise`."""
    drop = {normalise(c) for c in captions}
    return tuple(r for r in refs if normalise(r) not in drop)


def first_images(records: list[dict], limit: int | None) -> list[dict]:
    """The records of the first ``limit`` distinct ``image`` values, in file order."""
    if not limit:
        return records
    keep: list[str] = []
    for r in records:
        if r["image"] not in keep:
            if len(keep) == limit:
                continue
            keep.append(r["image"])
    chosen = set(keep)
    return [r for r in records if r["image"] in chosen]


# --------------------------------------------------------------------------- frames and images
def frame(rows: list[dict], extra: list[str], **card) -> pd.DataFrame:
    """A DataFrame of ``rows`` with :data:`BASE_COLUMNS` first, then ``extra``; ``card`` goes to ``attrs``."""
    df = pd.DataFrame(rows, columns=BASE_COLUMNS + extra)
    df["score"] = df["score"].astype("float64")
    df.attrs.update({"source": "real", "skipped": [], "dropped": [], **card})
    return df


def attach_images(df: pd.DataFrame, locate) -> pd.DataFrame:
    """Set ``path`` with ``locate(image)``; remove the rows of images that are missing or do not
    decode, listing ``(image, reason)`` in ``df.attrs["skipped"]``."""
    paths, skipped = {}, []
    for img in dict.fromkeys(df["image"]):
        p = locate(img)
        reason = image_ok(p) if p is not None else "FileNotFoundError: not in any image folder"
        if reason is None:
            paths[img] = str(p)
        else:
            skipped.append((img, reason))
    out = df[df["image"].isin(paths)].reset_index(drop=True)
    out["path"] = out["image"].map(paths)
    out.attrs = {**df.attrs, "skipped": df.attrs.get("skipped", []) + skipped}
    return out


def hashes(*paths: Path) -> dict[str, str]:
    from analysis.cache import file_sha256

    return {p.name: file_sha256(p) for p in paths}


# --------------------------------------------------------------------------- Flickr8k
def _flickr8k_text(dataset: str, root, annotations: str):
    """Locate ``Flickr8k.token.txt`` and the ``annotations`` file (in that order, so a missing file is
    reported as before), read the captions; return ``(base, tokens_path, path, tokens, refs)`` where
    ``refs`` maps each image to its reference captions."""
    base = data_root("flickr8k", root)
    tokens_path = find_file(base, "Flickr8k.token.txt", dataset=dataset, name="flickr8k", subdirs=FLICKR8K_TEXT,
                            get_it=FLICKR8K_GET)
    path = find_file(base, annotations, dataset=dataset, name="flickr8k", subdirs=FLICKR8K_TEXT, get_it=FLICKR8K_GET)
    tokens = read_tokens(tokens_path)
    return base, tokens_path, path, tokens, captions_by_image(tokens)


def _caption(tokens: dict[str, str], cid: str, source: str) -> str:
    try:
        return tokens[cid]
    except KeyError:
        raise ValueError(f"caption id {cid!r} from {source} is not in Flickr8k.token.txt") from None


def _flickr8k_images(df: pd.DataFrame, base: Path, dataset: str, images: bool) -> pd.DataFrame:
    if not images:
        return df
    folder = find_folder(base, FLICKR8K_IMAGES, dataset=dataset, name="flickr8k",
                         what="the Flickr8k images, from Flickr8k_Dataset.zip; or pass images=False")
    return attach_images(df, lambda img: folder / img)


def load_flickr8k_expert(root: str | Path | None = None, limit: int | None = None, *, images: bool = True,
                         drop_reference_candidates: bool = True) -> pd.DataFrame:
    """``flickr8k-expert``: three rows per pair (``rater`` = ``expert_1..3``, the file's score
    columns; the file does not say which person gave which score), ``score`` 1-4.

    ``references``: the image's 5 captions from ``Flickr8k.token.txt``. Following the
    CLIPScore/SPICE protocol, pairs whose caption *is* one of the image's own
    references are removed (``drop_reference_candidates=True``; recorded in
    ``attrs["dropped"]``). Extra columns: ``caption_image`` (the image the caption was
    written for), ``candidate_in_refs``. Tau-c is the published statistic.
    """
    name = "flickr8k-expert"
    base, tokens_path, path, tokens, refs = _flickr8k_text(name, root, "ExpertAnnotations.txt")
    rows, dropped = [], []
    for rec in first_images(read_expert(path), limit):
        caption = _caption(tokens, rec["caption_id"], path.name)
        own = tuple(refs.get(rec["image"], ()))
        in_refs = normalise(caption) in {normalise(r) for r in own}
        if in_refs and drop_reference_candidates:
            dropped.append((rec["image"], rec["caption_id"], "caption is one of the image's references"))
            continue
        for k, score in enumerate(rec["scores"], 1):
            rows.append({"dataset": name, "image": rec["image"], "caption_id": rec["caption_id"], "caption": caption,
                         "rater": f"expert_{k}", "score": score, "path": None, "references": own,
                         "caption_image": image_of(rec["caption_id"]), "candidate_in_refs": in_refs})
    df = frame(rows, ["caption_image", "candidate_in_refs"], name=name, licence=FLICKR8K_LICENCE,
               origin=f"user-supplied: {path.name} + {tokens_path.name} in {path.parent}",
               rating_unit="one expert score (1-4) per row; three rows per image-caption pair",
               files=hashes(path, tokens_path), dropped=dropped)
    return _flickr8k_images(df, base, name, images)


def load_flickr8k_cf(root: str | Path | None = None, limit: int | None = None, *, images: bool = True,
                     per_judgement: bool = False) -> pd.DataFrame:
    """``flickr8k-cf``: the CrowdFlower judgements.

    The file records counts, not individual judgements or worker ids, so by default
    there is one row per pair with ``score = n_yes / (n_yes + n_no)`` (``rater`` =
    ``crowd``), the unit of the published tau-b protocol (Hessel et al. 2021). With
    ``per_judgement=True`` each pair becomes ``n_yes`` rows of 1.0 and ``n_no`` rows of
    0.0 (``rater`` = ``crowd_<i>``, anonymous). Extra columns: ``n_yes``, ``n_no``,
    ``caption_image``. ``references``: the image's captions minus every caption judged
    for that image (as the CLIPScore preprocessing does).
    """
    name = "flickr8k-cf"
    base, tokens_path, path, tokens, refs = _flickr8k_text(name, root, "CrowdFlowerAnnotations.txt")
    records = first_images(read_crowdflower(path), limit)
    judged: dict[str, list[str]] = {}
    for rec in records:
        judged.setdefault(rec["image"], []).append(_caption(tokens, rec["caption_id"], path.name))
    rows = []
    for rec in records:
        common = {"dataset": name, "image": rec["image"], "caption_id": rec["caption_id"],
                  "caption": tokens[rec["caption_id"]], "path": None,
                  "references": without(refs.get(rec["image"], ()), judged[rec["image"]]),
                  "n_yes": rec["n_yes"], "n_no": rec["n_no"], "caption_image": image_of(rec["caption_id"])}
        n = rec["n_yes"] + rec["n_no"]
        if per_judgement:
            votes = [1.0] * rec["n_yes"] + [0.0] * rec["n_no"]
            rows += [{**common, "rater": f"crowd_{i}", "score": v} for i, v in enumerate(votes, 1)]
        else:
            rows.append({**common, "rater": "crowd", "score": rec["n_yes"] / n if n else math.nan})
    unit = ("one binary crowd judgement per row (anonymous)" if per_judgement
            else "one row per image-caption pair: fraction of yes among >= 3 crowd judgements")
    df = frame(rows, ["n_yes", "n_no", "caption_image"], name=name, licence=FLICKR8K_LICENCE,
               origin=f"user-supplied: {path.name} + {tokens_path.name} in {path.parent}",
               rating_unit=unit, files=hashes(path, tokens_path))
    return _flickr8k_images(df, base, name, images)


# --------------------------------------------------------------------------- THumB
THUMB_FIELDS = {"P": "precision", "R": "recall", "Fl": "fluency", "Con": "conciseness", "Inc": "inclusive"}


def thumb_row(rec: dict) -> dict:
    """One THumB JSON object -> one rating row (without ``references``/``path``)."""
    aspects = {col: number(str(rec.get(key, rec.get("Flu") if key == "Fl" else None))) + 0.0  # -0.0 -> 0.0
               for key, col in THUMB_FIELDS.items()}
    return {"dataset": "thumb", "image": rec["image"], "caption_id": f"{rec['seg_id']}#{rec['SYS']}",
            "caption": rec["hyp"].strip(), "rater": "THumB (adjudicated rubric score)",
            "score": number(str(rec.get("human_score"))), "path": None, "references": (),
            "system": rec["SYS"], "seg_id": str(rec["seg_id"]), "set_id": rec.get("set_id"), **aspects}


def thumb_references_file(folder: Path) -> dict[str, tuple[str, ...]]:
    """``{seg_id: refs}`` from ``mscoco_references.json`` (JSON lines), or ``{}`` if absent."""
    for fname in ("mscoco_references.json", "mscoco_references.jsonl"):
        if (folder / fname).is_file():
            return {str(r["seg_id"]): tuple(r["refs"]) for r in read_jsonl(folder / fname)}
    return {}


def thumb_references_karpathy(path: Path, records: list[dict]) -> dict[str, tuple[str, ...]]:
    """``{seg_id: refs}`` from a Karpathy ``dataset_coco.json``: the image's COCO captions minus
    the one that matches the ``Human`` hypothesis (THumB scored one reference as "Human")."""
    by_file = {e["filename"]: [s["raw"].strip() for s in e.get("sentences", [])] for e in read_karpathy(path)}
    human = {str(r["seg_id"]): r["hyp"] for r in records if r["SYS"] == "Human"}
    out = {}
    for r in records:
        sid = str(r["seg_id"])
        if sid not in out and r["image"] in by_file:
            out[sid] = without(by_file[r["image"]], [human[sid]] if sid in human else [])
    return out


def _thumb_image_locator(base: Path, image_dir, coco_root, first: list[str]):
    folders = ([Path(image_dir)] if image_dir else []) + [base / "val2014", base / "images", base,
                                                          data_root("coco", coco_root) / "val2014"]
    for folder in folders:
        if any((folder / img).is_file() for img in first):
            return lambda img: folder / img
    raise DataUnavailable(
        f"thumb: expected the COCO val2014 images (e.g. {first[0] if first else '?'}) in "
        f"{', '.join(map(str, folders))}, but none is there. Pass image_dir='/path/to/val2014', "
        f"or images=False to load the ratings without images. {how_to_supply('thumb', 'thumb')}")


def load_thumb(root: str | Path | None = None, limit: int | None = None, *, images: bool = True,
               references: bool = True, image_dir: str | Path | None = None,
               coco_root: str | Path | None = None) -> pd.DataFrame:
    """``thumb``: THumB 1.0 for MS-COCO, one row per (image, system) caption.

    ``score`` is ``human_score``; ``rater`` is ``THumB (adjudicated rubric score)`` (the
    release has no per-annotator scores). ``caption_id`` is ``<seg_id>#<SYS>``. Extra
    columns: ``system``, ``seg_id``, ``set_id``, ``precision``, ``recall``, ``fluency``,
    ``conciseness``, ``inclusive``. With ``references=True`` (default) a missing
    reference source raises :class:`DataUnavailable`; ``references=False`` leaves
    ``references`` empty. See the module docstring for the file format.
    """
    name = "thumb"
    base = data_root(name, root)
    path = find_file(base, "mscoco_THumB-1.0.jsonl", dataset=name, name=name, subdirs=THUMB_DIRS, get_it=THUMB_GET)
    records = first_images(read_jsonl(path), limit)
    files = [path]
    refs: dict[str, tuple[str, ...]] = {}
    if references:
        refs = thumb_references_file(path.parent) or thumb_references_file(base)
        ref_origin = "mscoco_references.json"
        if not refs:
            karpathy = [p / "dataset_coco.json" for p in (base, data_root("coco", coco_root))]
            found = next((p for p in karpathy if p.is_file()), None)
            if found is None:
                raise DataUnavailable(
                    f"thumb: expected the references 'mscoco_references.json' in {path.parent} (THumB repository, "
                    f"mscoco/), or a Karpathy 'dataset_coco.json' in {' or '.join(str(p.parent) for p in karpathy)}; "
                    f"neither is there. Pass references=False to load the ratings alone. "
                    f"{how_to_supply('thumb', 'thumb')}")
            refs, ref_origin = thumb_references_karpathy(found, records), f"{found} minus the Human caption"
            files.append(found)
    rows = [{**thumb_row(r), "references": refs.get(str(r["seg_id"]), ())} for r in records]
    df = frame(rows, ["system", "seg_id", "set_id", *THUMB_FIELDS.values()], name=name,
               licence="see the THumB repository (jungokasai/THumB); images and references under the COCO terms",
               origin=f"user-supplied: {path.name} in {path.parent}",
               rating_unit="one adjudicated rubric score per image-system caption: (P + R) / 2 + Fl + Con + Inc",
               references=ref_origin if references else "not loaded", files=hashes(*files))
    if not images:
        return df
    return attach_images(df, _thumb_image_locator(base, image_dir, coco_root, list(dict.fromkeys(df["image"]))[:20]))
