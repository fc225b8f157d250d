"""WordNet 3.0 from Debian as an nltk_data folder, and the physical-entity test of visual words."""
import doctest

import pytest

from analysis import wordnet as wnmod
from analysis.data import debian
from analysis.data.base import DataUnavailable


def test_doctests():
    result = doctest.testmod(wnmod)
    assert result.attempted > 0 and result.failed == 0, result


@pytest.mark.parametrize("word", ["dog", "banana", "bench", "table", "teddy bear", "kitchen"])
def test_things_that_can_be_seen_are_physical(word):
    assert wnmod.is_physical(word)


@pytest.mark.parametrize("word", ["idea", "happiness", "freedom", "knowledge", "bunch", ""])
def test_abstractions_are_not_physical(word):
    # "bunch" is a group (an abstraction) in WordNet. "justice" is NOT in this list: one of its noun senses is
    # judge.n.01 (a person), and one physical sense suffices.
    assert not wnmod.is_physical(word)


def test_plurals_and_case_are_reduced_by_morphy():
    assert wnmod.is_physical("bananas") and wnmod.is_physical("Geese") and wnmod.is_physical("mice")


def test_lexnames_file_has_the_45_wordnet_lexicographer_files():
    rows = (wnmod.nltk_data_dir() / "corpora" / "wordnet" / "lexnames").read_text().splitlines()
    assert len(rows) == 45
    # known rows of WordNet 3.0's lexnames (number, name, syntactic category 1 noun 2 verb 3 adj 4 adv)
    assert rows[0] == "00\tadj.all\t3" and rows[2] == "02\tadv.all\t4" and rows[3] == "03\tnoun.Tops\t1"
    assert rows[18] == "18\tnoun.person\t1" and rows[43] == "43\tverb.weather\t2" and rows[44] == "44\tadj.ppl\t3"
    wn = wnmod.wordnet()
    assert wn.synset("dog.n.01").lexname() == "noun.animal" and wn.synset("run.v.01").lexname() == "verb.motion"
    assert wn.get_version() == "3.0"


def test_dict_files_are_copies_not_links():
    folder = wnmod.nltk_data_dir() / "corpora" / "wordnet"
    files = list(folder.iterdir())
    assert {"data.noun", "index.noun", "noun.exc", "index.sense", "lexnames"} <= {p.name for p in files}
    assert not [p for p in files if p.is_symlink()]


def test_lexnames_parser_refuses_a_short_table():
    page = "\\fB1\\fP\tNOUN\n00\tnoun.Tops\tunique beginner for nouns\n"
    assert wnmod.lexnames_rows(page, expected=1) == [(0, "noun.Tops", 1)]
    with pytest.raises(ValueError, match="gave 1 rows.*expected 45"):
        wnmod.lexnames_rows(page)


def test_missing_debian_tools_give_data_unavailable_with_the_fix(tmp_cache, monkeypatch):
    monkeypatch.delenv("STUDY_DEBS", raising=False)
    monkeypatch.setattr(debian.shutil, "which", lambda tool: None)
    with pytest.raises(DataUnavailable, match="wordnet-base.*STUDY_DEBS"):
        wnmod.nltk_data_dir()


def test_unknown_package_version_gives_data_unavailable_with_the_fix(tmp_cache, monkeypatch):
    monkeypatch.delenv("STUDY_DEBS", raising=False)
    monkeypatch.setitem(debian.PACKAGES, "wordnet-base", "9:9.9-9")
    with pytest.raises(DataUnavailable, match="could not download Debian package wordnet-base=9:9.9-9.*STUDY_DEBS"):
        wnmod.nltk_data_dir()


def test_study_debs_finds_a_deb_whose_version_has_an_epoch(tmp_path, monkeypatch):
    deb = tmp_path / "wordnet-base_1%3a3.0-37_all.deb"  # the name apt-get download gives it
    deb.write_bytes(b"")
    monkeypatch.setenv("STUDY_DEBS", str(tmp_path))
    assert debian._download("wordnet-base", "1:3.0-37", tmp_path / "unused") == deb


def test_visual_vocabulary_keeps_caption_nouns_only_when_physical():
    from analysis import linguistics as lx

    caps = ["an idea of a dog on a table", "a bunch of happiness"]
    vocab = lx.visual_vocabulary(["freedom statue"], caps)
    assert {"dog", "table", "statue", "freedom"} <= vocab  # object names are kept whatever WordNet says
    assert not {"idea", "bunch", "happiness"} & vocab
    assert {"idea", "bunch", "happiness"} <= lx.visual_vocabulary([], caps, wordnet=False)


def test_is_visual_leaves_out_locations_the_medium_and_rare_senses():
    """Stricter than is_physical: "left"/"top"/"background" (locations), "image"/"picture"/"photo"/"closeup"
    (the depiction, not something in it) and "justice" (a rare judge sense) are physical but not visual."""
    from analysis import wordnet as W

    for w in ["dog", "bench", "bananas", "table", "man", "grass", "water", "hat", "teddy bear"]:
        assert W.is_visual(w), w
    for w in ["left", "right", "top", "front", "background", "image", "picture", "photo", "closeup", "justice",
              "idea", "bunch"]:
        assert not W.is_visual(w), w
    assert W.is_physical("left") and W.is_physical("closeup") and W.is_physical("justice")
