"""WordNet 3.0 for nltk, offline: Debian's ``wordnet-base`` + ``wordnet-sense-index`` as an nltk_data folder.

nltk cannot download its WordNet here, so the dict files come from the two Debian packages pinned in
:data:`analysis.data.debian.PACKAGES` (fetched with :func:`analysis.data.debian.fetch`, like the embedded
datasets). :func:`nltk_data_dir` builds one cache entry laid out as an nltk_data folder::

    <entry>/corpora/wordnet/{data,index}.{noun,verb,adj,adv}, *.exc, index.sense, cntlist(.rev), ...
    <entry>/corpora/wordnet/lexnames    (generated, see below)
    <entry>/corpora/wordnet/LICENSE     (the package's copyright file)
    <entry>/source.json                 (packages, versions, .deb sha256s)

The dict files are **copied**, not linked: nltk refuses a symlink that leaves its root as a path escape.
Debian does not ship the ``lexnames`` file nltk reads (lexicographer file number -> name), so it is
generated from the package's own ``lexnames(5WN)`` man page: one row ``NN<TAB>name<TAB>category`` per
lexicographer file, 45 rows, category 1 noun, 2 verb, 3 adjective, 4 adverb (the man page's own code table).

:func:`is_physical` is the visual-word test of issue 8: a word can be seen when some noun sense of it has
``physical_entity.n.01`` among its hypernyms (transitively; instance hypernyms count, so "eiffel tower",
an instance of ``tower.n.01``, passes).
"""
from __future__ import annotations

import gzip
import json
import re
import shutil
import warnings
from functools import lru_cache
from pathlib import Path

from analysis import cache
from analysis.data import debian
from analysis.data.base import DataUnavailable

PACKAGES = ("wordnet-base", "wordnet-sense-index")
DICT = "usr/share/wordnet/"
LEXNAMES_MAN = "usr/share/man/man5/lexnames.5WN.gz"
COPYRIGHT = "usr/share/doc/wordnet-base/copyright"
N_LEXNAMES = 45  # WordNet 3.0 has 45 lexicographer files, numbered 00..44
PHYSICAL = "physical_entity.n.01"
BUILD_VERSION = 1  # bump when the folder's layout or the lexnames generator changes: part of the cache key
_POS_NAMES = {"noun": "NOUN", "verb": "VERB", "adj": "ADJECTIVE", "adv": "ADVERB"}  # name prefix -> man page's word


def _keep(rel: str) -> bool:
    return rel.startswith(DICT) or rel in (LEXNAMES_MAN, COPYRIGHT)


def lexnames_rows(man: str, *, expected: int = N_LEXNAMES) -> list[tuple[int, str, int]]:
    """``(number, lexicographer file name, syntactic category)`` rows parsed from the ``lexnames(5WN)`` man page
    source. The rows are the table lines ``NN<TAB>name<TAB>contents``; the category is the man page's code
    (``\\fB1\\fP<TAB>NOUN`` ...) for the name's prefix (``noun.`` -> NOUN). Numbers must run 0, 1, ... and
    there must be ``expected`` rows.

    >>> page = "\\\\fB1\\\\fP\\tNOUN\\n\\\\fB3\\\\fP\\tADJECTIVE\\n00\\tadj.all\\tall adjective clusters\\n" \\
    ...        "01\\tnoun.person  \\tnouns denoting people\\n"
    >>> lexnames_rows(page, expected=2)
    [(0, 'adj.all', 3), (1, 'noun.person', 1)]
    """
    codes = {word: int(n) for n, word in re.findall(r"^\\fB(\d)\\fP\t([A-Z]+)\s*$", man, flags=re.M)}
    rows = []
    for num, name in re.findall(r"^(\d\d)\t([a-z]+\.[A-Za-z]+)\s*\t", man, flags=re.M):
        prefix = name.split(".")[0]
        if _POS_NAMES.get(prefix) not in codes:
            raise ValueError(f"lexnames man page: no syntactic category code for {name!r} (codes found: {codes})")
        rows.append((int(num), name, codes[_POS_NAMES[prefix]]))
    if [r[0] for r in rows] != list(range(len(rows))) or len(rows) != expected:
        raise ValueError(f"lexnames man page gave {len(rows)} rows numbered {[r[0] for r in rows][:5]}...; "
                         f"expected {expected} rows numbered 0..{expected - 1}")
    return rows


def lexnames_text(rows: list[tuple[int, str, int]]) -> str:
    """The ``lexnames`` file nltk reads: ``f"{number:02d}\\t{name}\\t{category}\\n"`` per row.

    >>> lexnames_text([(0, "adj.all", 3), (1, "noun.person", 1)])
    '00\\tadj.all\\t3\\n01\\tnoun.person\\t1\\n'
    """
    return "".join(f"{n:02d}\t{name}\t{cat}\n" for n, name, cat in rows)


def _sources() -> dict[str, tuple[Path, dict]]:
    return {name: (f := debian.fetch(name, _keep, tag="wordnet"), debian.source_info(f)) for name in PACKAGES}


def _copy_dict(folder: Path, dest: Path) -> int:
    n = 0
    for p in sorted((folder / DICT).iterdir()):
        if not p.is_file() or p.is_symlink():
            continue
        why = cache.damage(p)
        if why:
            raise DataUnavailable(f"WordNet file {p} is {why}; reconnect to a Debian mirror (or set STUDY_DEBS) "
                                  "and run 'python -m analysis fetch'")
        target = dest / p.name
        if target.exists() and cache.file_sha256(target) != cache.file_sha256(p):
            raise ValueError(f"two WordNet packages ship different {p.name}")
        shutil.copyfile(p, target)  # a real copy: nltk refuses links that leave its root
        n += 1
    return n


def nltk_data_dir() -> Path:
    """The cache entry that is an nltk_data folder holding ``corpora/wordnet/`` (built on first use from the
    pinned Debian packages; see the module docstring). Raises :class:`DataUnavailable` naming the fix when the
    packages cannot be fetched (no apt/dpkg, no mirror and no ``$STUDY_DEBS``)."""
    sources = _sources()
    recipe = {"wordnet": "3.0", "version": BUILD_VERSION,
              "packages": {n: {"version": s["version"], "deb_sha256": s["deb_sha256"]}
                           for n, (_, s) in sources.items()}}

    def build(out: Path) -> None:
        dest = out / "corpora" / "wordnet"
        dest.mkdir(parents=True)
        files = sum(_copy_dict(folder, dest) for folder, _ in sources.values())
        base = sources["wordnet-base"][0]
        rows = lexnames_rows(gzip.decompress((base / LEXNAMES_MAN).read_bytes()).decode("utf-8", "replace"))
        (dest / "lexnames").write_text(lexnames_text(rows))
        if (base / COPYRIGHT).is_file():
            shutil.copyfile(base / COPYRIGHT, dest / "LICENSE")
        (out / "source.json").write_text(json.dumps(
            {**recipe, "dict_files_copied": files, "lexnames_rows": len(rows),
             "lexnames_from": f"wordnet-base:{LEXNAMES_MAN}"}, indent=1))

    folder = cache.entry("wordnet", recipe, build)
    bad = [p for p in (folder / "corpora" / "wordnet").iterdir() if cache.damage(p)]
    if bad:
        raise DataUnavailable(f"the WordNet folder {folder} has damaged file(s) ({', '.join(p.name for p in bad)}) "
                              "and could not be rebuilt; reconnect to a Debian mirror (or set STUDY_DEBS) and run "
                              "'python -m analysis fetch'")
    return folder


@lru_cache(maxsize=1)
def wordnet():
    """nltk's ``WordNetCorpusReader`` over :func:`nltk_data_dir` (English only: no Open Multilingual WordNet),
    loaded once per process; nothing is downloaded. The folder is appended to ``nltk.data.path``: nltk
    (3.10+) reads corpora only under its data roots, and this also makes ``nltk.corpus.wordnet`` find it."""
    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = str(nltk_data_dir())
    if root not in nltk.data.path:
        nltk.data.path.append(root)
    with warnings.catch_warnings():  # "multilingual functions are not available": expected, no OMW here
        warnings.filterwarnings("ignore", message="The multilingual functions", category=UserWarning)
        return WordNetCorpusReader(str(Path(root) / "corpora" / "wordnet"), None)


@lru_cache(maxsize=None)
def is_physical(word: str) -> bool:
    """True when some noun sense of ``word`` is a physical entity: ``physical_entity.n.01`` is the sense itself
    or among its hypernyms, followed transitively through hypernyms and instance hypernyms. ``word`` is
    looked up as nltk does (case-insensitive, plurals reduced by WordNet's morphy, spaces as ``_``), so
    ``"bananas"`` and ``"teddy bear"`` work; a word with no noun sense is not physical. Lenient by design:
    one physical sense suffices ("bank" the building passes beside "bank" the institution)."""
    wn = wordnet()
    lemma = "_".join(word.lower().split())
    if not lemma:
        return False
    root = wn.synset(PHYSICAL)
    up = lambda s: s.hypernyms() + s.instance_hypernyms()  # noqa: E731
    return any(s == root or root in s.closure(up) for s in wn.synsets(lemma, pos="n"))


#: lexicographer files of things one can see: animals, artefacts, body parts, food, natural objects, people,
#: plants, substances (not locations, attributes, cognition, groups, states, events, ...)
VISUAL_LEXNAMES = frozenset({"noun.animal", "noun.artifact", "noun.body", "noun.food", "noun.object",
                             "noun.person", "noun.plant", "noun.substance"})
#: senses counted per word: WordNet orders senses by frequency, so the first two are the usual readings
VISUAL_SENSES = 2
#: the picture itself is not something in it: "image", "picture", "photo", "closeup", "painting" name the medium
MEDIA = ("representation.n.02", "graphic_art.n.01")


@lru_cache(maxsize=None)
def is_visual(word: str) -> bool:
    """True when one of the ``VISUAL_SENSES`` most frequent noun senses of ``word`` is a physical entity
    (:func:`is_physical`'s hypernym test) in one of :data:`VISUAL_LEXNAMES`, and is not a depiction
    (:data:`MEDIA` and below: picture, photograph, closeup, painting). Stricter than :func:`is_physical`,
    which a rare sense passes ("left" via a body sense, "justice" via judge) and which counts locations
    ("left", "top", "background") and the medium ("image", "closeup") as physical.

    >>> [w for w in ["dog", "tables", "cloud", "left", "top", "image", "closeup", "idea"] if is_visual(w)]
    ['dog', 'tables', 'cloud']
    """
    wn = wordnet()
    lemma = "_".join(word.lower().split())
    if not lemma:
        return False
    root, media = wn.synset(PHYSICAL), {wn.synset(m) for m in MEDIA}
    up = lambda s: s.hypernyms() + s.instance_hypernyms()  # noqa: E731
    for s in wn.synsets(lemma, pos="n")[:VISUAL_SENSES]:
        above = set(s.closure(up))
        if s.lexname() in VISUAL_LEXNAMES and root in above and not (media & (above | {s})):
            return True
    return False
