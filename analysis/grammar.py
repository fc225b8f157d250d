"""A rule-based grammar-error detector for captions (the study's own: no grammar checker installs offline).

Each rule is a small pure function ``rule(doc) -> list[int]`` over one spaCy parse (``analysis.linguistics.nlp()``,
``en_core_web_sm``), returning the index of the token at which each error it finds sits (one entry per error).
``RULES`` names them with a one-line description; :func:`grammar_errors` runs them all over a batch of captions and
reports, per caption, the number of errors and which rule fired for each.

**What counts as grammatical.** Captions are usually noun phrases ("a brown dog sitting on a wooden bench"): that is
the genre, and a caption without a finite verb is *not* an error. The rules look for shapes that are wrong in any
register: a word written twice ("a a bunch"), an article with no noun after it ("a on the table"), a relative
clause with no verb ("a dog that on the bench"), a caption ending in "and" or "on", "a dogs" / "two dog", "an
banana", "a bunch but a bananas", "the dogs is". These are the shapes a reward-hacking captioner writes (Ma et al.
2022, Figure 1: "a closeup image that is a a bunch but a a bananas").

**Design choices.** Rules read the surface words and the tagger first and the dependency parse only where it is
needed (subjects, compounds, relative clauses), because the parse of an ungrammatical caption is itself unreliable.
Where a shape is ambiguous the rule stays silent (precision over recall): "very very" (intensifier doubling) and
"choo choo" are allowed; a final "in"/"on" after a form of *be* ("the tv is on") is allowed; agreement is not
checked for collective/partitive subjects ("a group of people are"); "a/an" is not checked before acronyms.
Number is read from the tagger and the word's form together (:func:`noun_number`, with WordNet's noun list from
the spaCy model's lemmatizer tables): where they disagree the noun is not judged. Each rule's docstring names one
error it catches and one look-alike it must not flag. Rules avoid reporting one fault twice: the article rules
skip an article that is repeated ("a a"), which ``repeated_word`` reports.

**Known gaps** (left unflagged on purpose, for precision): a missing article ("a man riding skateboard": count and
mass nouns cannot be told apart without a lexicon of countability), a bag of nouns ("dog cat frisbee grass"),
"can" after a noun (the noun: "a soda can on a table", so "a man can on the bench" passes), an article before an
adjective that WordNet also lists as a noun ("a dog next to a red"), and whatever the tagger mis-reads.

A caption is *flagged* when it has at least one error; :func:`validate` scores flags against labels (True =
ungrammatical) as precision ``tp/(tp+fp)``, recall ``tp/(tp+fn)`` and ``F1 = 2PR/(P+R)``.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable, Sequence

# ----------------------------------------------------------------------------- word lists (all lower case)
ARTICLES = frozenset({"a", "an", "the"})
#: determiners that must be followed by a noun phrase (his/her/this/that/each/some... can stand alone: left out)
NP_DETERMINERS = ARTICLES | {"every", "my", "your", "its", "our", "their"}
#: doubled words that are grammatical (intensifiers, reduplicated words, "the dog that that man owns")
REDUPLICATION_OK = frozenset({"very", "really", "so", "far", "much", "more", "too", "that", "had",
                              "bye", "choo", "ha", "mahi", "cous", "bora", "tom", "chop", "pom", "no"})
#: adjectives and ordinals that can end a noun phrase after an article ("the other", "a few", "the first")
ADJ_HEADS = frozenset({"other", "others", "same", "few", "little", "lot", "latter", "former", "rest", "first",
                       "second", "third", "last", "next", "left", "right", "middle", "front", "back", "top",
                       "bottom", "most", "least", "many", "more", "best", "worst", "whole", "former", "own"})
#: prepositions that may end a caption as adverbial particles ("a plane taking off", "a man looking up")
PARTICLES = frozenset({"up", "down", "out", "off", "away", "back", "around", "about", "by", "over", "along",
                       "through", "together", "apart", "aside", "inside", "outside", "above", "below", "behind",
                       "underneath", "nearby", "overhead", "ahead", "across", "past", "beyond", "forth", "round",
                       "home", "upstairs", "downstairs", "indoors", "outdoors", "alongside", "beneath", "afterwards",
                       "before", "after", "later", "too", "as", "well", "there", "here", "anyway", "instead"})
CONJUNCTIONS = frozenset({"and", "or", "but", "nor", "&"})
SUBORDINATORS = frozenset({"because", "while", "although", "if", "unless", "whereas"})
RELATIVES = frozenset({"that", "which", "who", "whom", "whose"})
BE = frozenset({"is", "are", "was", "were", "be", "been", "being", "am", "'s", "'re"})
PERSONAL = frozenset({"i", "you", "he", "she", "it", "we", "they", "there", "this", "that", "these", "those",
                      "one", "someone", "something", "everyone", "everything"})
ELLIPSIS_LICENSORS = frozenset({"what", "where", "how", "when", "why", "whatever", "wherever", "than", "as", "so"})
NEGATORS = frozenset({"not", "n't", "no", "never", "nothing", "none", "nobody", "only", "neither", "nor", "without"})
BUT_EXCEPT = frozenset({"all", "everything", "anything", "nothing", "nobody", "none", "anyone", "everyone",
                        "everybody", "anybody", "last", "one"})
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
                "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
                "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
SINGULAR_DETS = frozenset({"a", "an", "one", "every", "each", "another", "either", "neither", "this", "that"})
PLURAL_DETS = frozenset({w for w, n in NUMBER_WORDS.items() if n > 1}
                        | {"several", "many", "these", "those", "both", "few", "various", "numerous", "multiple"})
#: after "a"/"an", a quantity word makes a plural noun right: "a few dogs", "a dozen eggs"
QUANTITY = frozenset({"few", "couple", "dozen", "hundred", "thousand", "million", "great", "good", "lot"})
#: nouns whose singular and plural look alike, or that end in -s while singular, or are plural-only
INVARIANT = frozenset({"sheep", "deer", "fish", "moose", "bison", "buffalo", "elk", "salmon", "trout", "shrimp",
                       "squid", "cod", "swine", "aircraft", "spacecraft", "offspring", "series", "species",
                       "means", "news", "people", "police", "cattle", "staff", "bus", "glass", "grass", "dress",
                       "lens", "canvas", "cactus", "octopus", "walrus", "iris", "chassis", "tennis", "gas", "class",
                       "mattress", "compass", "harness", "circus", "hippopotamus", "bonus", "virus", "campus",
                       "pants", "jeans", "shorts", "scissors", "glasses", "sunglasses", "binoculars", "clothes",
                       "goods", "data", "physics", "athletics", "gymnastics", "christmas", "mathematics",
                       "headquarters", "barracks", "crossroads", "dice", "pliers", "tongs", "trousers",
                       "overalls", "pajamas", "pyjamas", "leggings", "tights", "sweatpants", "swimwear",
                       "broccoli", "lettuce", "spinach", "asparagus", "hummus", "couscous", "citrus"})
#: plural nouns that are fine as modifiers of another noun ("a sports car", "a kids menu", "a glasses case")
PLURAL_MODIFIER_OK = INVARIANT | {"sports", "arms", "sales", "savings", "games", "kids", "girls", "boys", "mens",
                                  "womens", "childrens", "men", "women", "children", "drinks", "parts", "arts",
                                  "skis", "roller", "rules", "customs", "communications", "electronics",
                                  "fireworks", "antiques", "sweets", "veggies", "vegetables", "books", "records",
                                  "animals", "pets", "services", "operations", "systems", "sciences", "graphics",
                                  "letters", "lights", "stairs", "steps", "tracks", "shoes", "boots", "toys"}
#: nouns that take a plural verb though tagged or spelt like singulars
ALWAYS_PLURAL = frozenset({"people", "police", "cattle"})
#: verbs whose object is followed by a bare infinitive ("helping a child fly a kite", "watching a dog sit")
BARE_INFINITIVE = frozenset({"let", "make", "see", "watch", "help", "have", "hear", "feel", "bid", "notice"})
DITRANSITIVE = frozenset({"give", "hand", "feed", "show", "offer", "throw", "toss", "pass", "bring", "send",
                          "teach", "tell", "buy", "make", "get", "serve", "pour", "read", "sell", "lend", "pay",
                          "call", "name", "consider", "find", "keep", "leave", "cook", "bake", "fetch", "award"})
MEASURE_NOUNS = frozenset({"size", "color", "colour", "shape", "length", "height", "width", "way", "same", "day",
                           "night", "morning", "evening", "afternoon", "week", "year", "time", "moment", "whole"})
_TRANSPARENT = frozenset({"-", "'", '"', "`", "``", "''", "/", "(", ")", "\u201c", "\u201d", "\u2018", "\u2019",
                          "\u2014", "\u2013", "--"})
_FINITE_OR_VERBAL = frozenset({"VB", "VBD", "VBN", "VBP", "VBZ", "MD"})


# ----------------------------------------------------------------------------- small helpers
def _tokens(doc) -> list:
    """The caption's tokens without spaces (a list, kept in ``doc.user_data``: spaCy builds a new Token object on
    every iteration, and the rules walk each caption many times)."""
    cached = doc.user_data.get("grammar_tokens")
    if cached is None:
        cached = doc.user_data["grammar_tokens"] = [t for t in doc if not t.is_space]
    return cached


def _words(doc) -> list:
    """The caption's tokens without spaces and without quote/hyphen/bracket marks (other punctuation is kept:
    a comma or full stop ends a phrase); cached like :func:`_tokens`."""
    cached = doc.user_data.get("grammar_words")
    if cached is None:
        cached = doc.user_data["grammar_words"] = [t for t in _tokens(doc) if t.text not in _TRANSPARENT]
    return cached


def _is_punct(t) -> bool:
    return t.is_punct or t.pos_ == "PUNCT"


def _last_word(toks):
    """Index (into ``toks``) of the last non-punctuation token, or None."""
    for k in range(len(toks) - 1, -1, -1):
        if not _is_punct(toks[k]):
            return k
    return None


def _is_modal(t) -> bool:
    """A modal auxiliary, except "can" after a noun/adjective/determiner (the noun: "a soda can", "a trash can")."""
    if t.tag_ != "MD":
        return False
    return not (t.lower_ == "can" and t.i > 0 and t.nbor(-1).pos_ in ("NOUN", "PROPN", "ADJ", "DET"))


def _noun_head(toks, k: int):
    """The head noun of the noun phrase whose determiner is ``toks[k]`` or None, found by walking right over
    adjectives, adverbs, participles and compound-modifier nouns. Returns ``(head, passed_compound, passed_number)``;
    ``head`` is None when the phrase has no noun (other rules deal with that) or ends in a compound adjective
    ("a two year old child": ``year`` is a measure, not the head)."""
    passed_compound = passed_number = False
    seen_mod = False
    j = k + 1
    while j < len(toks):
        u = toks[j]
        if u.pos_ in ("NOUN", "PROPN"):
            nxt = toks[j + 1] if j + 1 < len(toks) else None
            modifier = u.dep_ in ("compound", "npadvmod", "nmod") and u.head.i > u.i and u.head.pos_ in (
                "NOUN", "PROPN", "ADJ", "VERB")
            if nxt is not None and (nxt.pos_ in ("NOUN", "PROPN") or
                                    (nxt.pos_ == "ADJ" and nxt.lower_ in ("old", "long", "tall", "high", "wide"))):
                modifier = True  # "hot dog buns", "two year old"
            if modifier:
                passed_compound = True
                j += 1
                continue
            return u, passed_compound, passed_number
        if u.pos_ == "NUM" or u.like_num:
            passed_number = True
        elif u.pos_ in ("ADJ", "ADV") or u.tag_ in ("VBG", "VBN"):
            seen_mod = True
        elif u.pos_ == "CCONJ" and seen_mod:
            pass
        else:
            return None, passed_compound, passed_number
        j += 1
    return None, passed_compound, passed_number


@lru_cache(maxsize=1)
def _inflect():
    import inflect

    return inflect.engine()


@lru_cache(maxsize=20000)
def expected_article(word: str) -> str | None:
    """``"a"`` or ``"an"`` for ``word`` as written, or None where the sound is not decidable from the spelling.

    Alphabetic words: the ``inflect`` package's ``engine().a(word)`` (its rules handle "an hour", "a unicorn",
    "a one", "a European"). Digits: "an" before a number read with an initial vowel (8..., 11, 18, 11 000...).
    Undecided (None): acronyms (all capitals, or no vowel letter: "an SUV" / "a SUV", "a tv") and the words whose
    initial *h* is pronounced either way (herb, historic, hotel...).

    >>> [expected_article(w) for w in ("apple", "hour", "unicorn", "banana", "8", "18", "SUV")]
    ['an', 'an', 'a', 'a', 'an', 'an', None]
    """
    if word.isdigit():
        return "an" if word[0] == "8" or re.fullmatch(r"1[18](\d{3})*", word) else "a"
    if not word.isalpha() or len(word) < 2:
        return None
    low = word.lower()
    if (word.isupper() and len(word) <= 5) or not re.search(r"[aeiou]", low):
        return None
    if low.startswith(("herb", "histor", "hotel", "homage", "humble", "heroic")):
        return None
    return _inflect().a(word).split(" ", 1)[0].lower()


@lru_cache(maxsize=1)
def _lexicon() -> tuple[frozenset, frozenset, dict]:
    """WordNet's noun lemmas, its adjective and adverb lemmas (together) and its irregular noun plurals, as
    shipped in the spaCy model's lemmatizer tables (``lemma_index``, ``lemma_exc``): no extra download."""
    from analysis.linguistics import nlp

    tables = nlp().get_pipe("lemmatizer").lookups
    index, exc = tables.get_table("lemma_index"), tables.get_table("lemma_exc")
    return frozenset(index["noun"]), frozenset(index["adj"]) | frozenset(index["adv"]), dict(exc["noun"])


def noun_number(t) -> str | None:
    """``"sg"``/``"pl"`` of a noun token when the tagger and the word's form agree, None otherwise.

    Plural: tagged NNS/NNPS and its singular (WordNet's irregular plurals, else ``inflect``'s ``singular_noun``) is
    a different WordNet noun ("bananas" -> banana, "mice" -> mouse). Singular: tagged NN/NNP and not a plural form
    by either source ("dog", "glass"). Undecided (None): disagreements such as a rare plural tagged NN ("caribous"),
    a mass noun tagged NNS ("broccoli"), -s singulars ("bus" looks like a plural of "bu"), ``INVARIANT`` nouns.
    ``ALWAYS_PLURAL`` nouns (people, police, cattle) are plural.
    """
    return noun_number_of_form(t.lower_, t.tag_)


@lru_cache(maxsize=50000)
def noun_number_of_form(low: str, tag: str) -> str | None:
    """:func:`noun_number` of a lower-case word with a Penn tag (memoised)."""
    if low in ALWAYS_PLURAL:
        return "pl"
    if low in INVARIANT or not low.isalpha() or len(low) < 3:
        return None  # also units and abbreviations: "275 m"
    nouns, _, exc = _lexicon()
    single = exc[low][0] if low in exc else (_inflect().singular_noun(low) or None)
    if tag in ("NNS", "NNPS"):
        return "pl" if single and single != low and single in nouns else None
    if tag in ("NN", "NNP"):
        return "sg" if single is None else None
    return None


# ----------------------------------------------------------------------------- the rules
def repeated_word(doc) -> list[int]:
    """The same word twice in a row (case-insensitive, no punctuation between): one error per repeat.

    Intensifier and reduplication doublings are grammatical and allowed (``REDUPLICATION_OK``: "very very",
    "bye bye", "choo choo", "that that"). Catches "a closeup image that is **a a** bunch"; must not flag
    "a very very large elephant".

    >>> from analysis.linguistics import parse
    >>> repeated_word(parse(["a a bunch of bananas and and"])[0]), repeated_word(parse(["a very very big dog"])[0])
    ([1, 6], [])
    """
    toks = _tokens(doc)
    return [b.i for a, b in zip(toks, toks[1:])
            if a.is_alpha and a.lower_ == b.lower_ and a.lower_ not in REDUPLICATION_OK]


def repeated_phrase(doc) -> list[int]:
    """A phrase of 2-4 words written twice in a row (the reward-hacking loop): one error per repeat.

    Catches "a dog **on a bench on a bench**", "a picture **of a of a** cat"; must not flag "a dog on a bench next
    to a bench" (not adjacent) or "one by one".

    >>> from analysis.linguistics import parse
    >>> repeated_phrase(parse(["a cat on a bed on a bed"])[0]), repeated_phrase(parse(["a cat on a bed"])[0])
    ([5], [])
    """
    toks = [t for t in _tokens(doc) if not _is_punct(t)]
    low = [t.lower_ for t in toks]
    out, i = [], 0
    while i < len(toks):
        for n in (4, 3, 2):
            gram = low[i:i + n]
            if len(gram) == n and gram == low[i + n:i + 2 * n] and len(set(gram)) > 1:
                out.append(toks[i + n].i)
                i += n - 1
                break
        i += 1
    return out


NOMINAL_DEPS = frozenset({"ROOT", "nsubj", "nsubjpass", "dobj", "pobj", "attr", "appos", "dative", "npadvmod",
                          "oprd"})


def _nominal_adj(u) -> bool:
    """An adjective- or adverb-tagged word that is really a noun: it fills a noun's slot in the parse and WordNet
    knows it as a noun or not as an adjective/adverb (the tagger calls rare nouns adjectives: "a hedgehog",
    "a big dromedary")."""
    role = u.dep_ in NOMINAL_DEPS or (u.dep_ == "conj" and u.head.pos_ in ("NOUN", "PROPN"))
    nouns, adjs, _ = _lexicon()
    return role and (u.lower_ in nouns or u.lower_ not in adjs)


def determiner_without_noun(doc) -> list[int]:
    """An article or possessive determiner (``NP_DETERMINERS``: a, an, the, every, my, your, its, our, their) not
    followed by a noun phrase: the words after it (adjectives, adverbs, participles, numbers, "and" between
    adjectives) must reach a noun, a number, a pronoun "one/other", or a verb-tagged word (a mis-tagged noun).
    A phrase may end in an adjective only after "the" (a nominalised adjective: "the red", "the old"), when the
    adjective is one that heads phrases (``ADJ_HEADS``: "the other", "a few", "the first"), or when the word fills a
    noun's slot in the parse and WordNet lists it as a noun or not as an adjective (rare nouns the tagger calls
    adjectives: "a hedgehog"; this also lets "a dog next to a red" pass: "red" is a WordNet noun), or the
    word is a WordNet noun and no WordNet adjective ("a magpie and two lions" mis-parsed as adjectives).
    An article followed by the same article ("a a") is left to ``repeated_word``.

    Catches "**a** on the table", "a dog on **the**", "**a** the dog", "a dog next to **a** red"; must not flag
    "a red and white bus", "one on top of the other", "a few".

    >>> from analysis.linguistics import parse
    >>> (determiner_without_noun(parse(["a on the table"])[0]),
    ...  determiner_without_noun(parse(["a red and white bus"])[0]))
    ([0], [])
    """
    toks = _words(doc)
    out = []
    for k, t in enumerate(toks):
        if t.lower_ not in NP_DETERMINERS:
            continue
        if t.lower_ == "its" and t.pos_ not in ("DET", "PRON"):
            continue
        if k + 1 < len(toks) and toks[k + 1].lower_ == t.lower_:
            continue  # "a a": repeated_word
        ok, last_adj = False, None
        j = k + 1
        while j < len(toks):
            u = toks[j]
            if u.pos_ in ("NOUN", "PROPN", "NUM", "VERB", "X", "SYM") or u.like_num or u.lower_ in (
                    "one", "ones", "other", "others"):
                ok = True
                break
            if u.pos_ in ("ADJ", "ADV") and _nominal_adj(u):
                ok = True
                break
            if u.pos_ in ("ADJ", "ADV") and not (u.tag_ in ("WRB", "WDT") or u.lower_ in RELATIVES):
                last_adj = u
            elif (u.pos_ == "CCONJ" or u.text == ",") and last_adj is not None and j + 1 < len(toks) and \
                    toks[j + 1].pos_ in ("ADJ", "ADV", "NOUN", "PROPN", "VERB", "NUM"):
                pass  # "a red and white bus", "a ripe, red tomato"
            else:
                break
            j += 1
        if not ok and last_adj is not None:
            nouns, adjs, _ = _lexicon()
            ok = (t.lower_ == "the" and last_adj.pos_ == "ADJ" or last_adj.lower_ in ADJ_HEADS or
                  last_adj.tag_ in ("JJS", "RBS") or (last_adj.lower_ in nouns and last_adj.lower_ not in adjs))
        if not ok:
            out.append(t.i)
    return out


def _parsed_relative_verb(t, toks) -> bool:
    """The parser made ``t`` the subject/object of a relative clause whose verb it mis-tagged ("paintings that
    present emotion": *present* tagged JJ): the clause head comes after ``t``, is a WordNet verb (base form, or
    with -s/-es dropped), is not a gerund, and no determiner or preposition stands between (which would make it a
    noun: "a man who a hat")."""
    h = t.head
    if t.dep_ not in ("nsubj", "nsubjpass", "dobj") or h.dep_ != "relcl" or h.i <= t.i or h.tag_ == "VBG":
        return False
    if any(w.pos_ in ("DET", "ADP", "NUM") for w in t.doc[t.i + 1:h.i]):
        return False
    low = h.lower_
    return any(f in _verbs() for f in (low, low[:-1] if low.endswith("s") else None,
                                       low[:-2] if low.endswith("es") else None))


@lru_cache(maxsize=1)
def _verbs() -> frozenset:
    from analysis.linguistics import nlp

    return frozenset(nlp().get_pipe("lemmatizer").lookups.get_table("lemma_index")["verb"])


def missing_verb(doc) -> list[int]:
    """A clause that needs a verb and has none. Bare noun phrases are the caption genre and are never flagged;
    what is flagged is (1) a relative word that opens a clause (that, which, who, whom, whose, tagged as a wh-word,
    or "because" not followed by "of") with no verb before the clause ends (next conjunction, ";" or end), a
    gerund alone does not count ("a man that sitting" lacks its auxiliary); (2) a modal auxiliary with no verb in
    the next four words ("a man could on the bench"; "which way will you go" is fine); a final modal is left to
    ``dangling_end``; "can" after a noun is the noun ("a soda can on a table") and is not checked.

    Catches "a dog **that** on the bench", "a man **who** a hat", "a dog **which** the bench"; must not flag
    "a dog that is on the bench", "a dog on a bench", "a soda can on a table" ("can" the noun).

    >>> from analysis.linguistics import parse
    >>> missing_verb(parse(["a dog that on the bench"])[0]), missing_verb(parse(["a dog that is on the bench"])[0])
    ([2], [])
    """
    toks = _words(doc)
    out = []
    for k, t in enumerate(toks):
        low = t.lower_
        is_marker = (low in RELATIVES and t.tag_ in ("WDT", "WP", "WP$")) or (
            low == "because" and not (k + 1 < len(toks) and toks[k + 1].lower_ == "of"))
        if is_marker:
            if _parsed_relative_verb(t, toks):
                continue
            j, found = k + 1, False
            while j < len(toks):
                u = toks[j]
                if u.pos_ == "CCONJ" or u.text in (";", ":") or (u.lower_ in RELATIVES and u.tag_ in ("WDT", "WP")):
                    break
                if u.tag_ in _FINITE_OR_VERBAL:
                    found = True
                    break
                j += 1
            if not found:
                out.append(t.i)
        elif _is_modal(t) and k + 1 < len(toks) and not _is_punct(toks[k + 1]):
            window = []
            for u in toks[k + 1:k + 5]:
                if _is_punct(u) or u.pos_ == "CCONJ":
                    break
                window.append(u)
            if window and not any(u.tag_ in _FINITE_OR_VERBAL for u in window):
                out.append(t.i)
    return out


def _stranded_ok(t) -> bool:
    """A final preposition whose object was moved away: inside a relative clause or an infinitive
    ("a bench that a dog is sitting on", "a toy to play with")."""
    for a in t.ancestors:
        if a.dep_ in ("relcl", "xcomp") or any(c.tag_ == "TO" for c in a.children) or a.tag_ == "VB":
            return True
    return t.i > 0 and t.nbor(-1).tag_ == "VB"


def dangling_end(doc) -> list[int]:
    """The caption ends (before any final punctuation) in a word that needs something after it: a coordinating
    conjunction (and, or, but, nor), a subordinator (because, while, although, if, unless, whereas), a preposition
    that is not also an adverbial particle (``PARTICLES``: "taking off", "looking up" are fine; "in"/"on" are fine
    only after a form of *be*: "the tv is on"), or a form of *be* / a modal ("a dog that is") unless a pronoun
    comes right before it or a wh-word/"than"/"as" licenses the ellipsis ("what it is", "bigger than it is").
    A stranded preposition in a relative clause or infinitive is fine ("a toy to play with").
    A final determiner is left to ``determiner_without_noun``, a final "that/which" to ``missing_verb``.

    Catches "a dog **and**", "a cat **on**", "a dog sitting **on**", "a dog that **is**"; must not flag
    "a plane taking off", "the tv is on", "a toy for the dog to play with".

    >>> from analysis.linguistics import parse
    >>> dangling_end(parse(["a cat on"])[0]), dangling_end(parse(["a plane taking off."])[0])
    ([2], [])
    """
    toks = _words(doc)
    k = _last_word(toks)
    if k is None:
        return []
    t = toks[k]
    low, prev = t.lower_, (toks[k - 1] if k > 0 else None)
    if low in CONJUNCTIONS and t.pos_ in ("CCONJ", "SCONJ", "ADP", "SYM"):
        return [t.i]
    if low in SUBORDINATORS and t.pos_ in ("SCONJ", "ADP"):
        return [t.i]  # not "for a while" (a noun)
    if t.pos_ == "ADP" or t.tag_ in ("IN", "RP"):
        if low in PARTICLES or low in RELATIVES or low in ("that", "so", "though", "like", "once"):
            return []
        if low in ("in", "on", "off") and prev is not None and prev.lower_ in BE:
            return []
        if low in ("in", "on") and prev is not None and (prev.dep_ == "prt" or t.dep_ == "prt"):
            return []
        return [] if _stranded_ok(t) else [t.i]
    if low in BE or _is_modal(t):
        before = {u.lower_ for u in toks[:k]}
        if (prev is not None and prev.lower_ in PERSONAL - {"that"}) or before & ELLIPSIS_LICENSORS:
            return []
        return [t.i]
    return []


def preposition_without_object(doc) -> list[int]:
    """A preposition (not an adverbial particle) directly followed by a conjunction that does not join it to a
    second preposition, or by an auxiliary/modal: its object is missing.

    Catches "a dog **on** and a cat", "a dog **with** is sitting"; must not flag "up and down the street",
    "in and around the house", "a dog with a ball and a cat".

    >>> from analysis.linguistics import parse
    >>> preposition_without_object(parse(["a dog on and a cat"])[0])
    [2]
    >>> preposition_without_object(parse(["a dog running in and around the house"])[0])
    []
    """
    toks = _words(doc)
    out = []
    for k, t in enumerate(toks[:-1]):
        if t.pos_ != "ADP" or t.lower_ in PARTICLES:
            continue
        u = toks[k + 1]
        after = toks[k + 2] if k + 2 < len(toks) else None
        if u.pos_ == "CCONJ" and u.dep_ != "preconj" and u.lower_ not in ("both", "either", "neither") and \
                after is not None and not _is_punct(after) and after.pos_ not in ("ADP", "ADV") and \
                after.lower_ not in PARTICLES:
            out.append(t.i)
        elif u.pos_ == "AUX" and (u.lower_ in BE or _is_modal(u)):
            out.append(t.i)
    return out


def empty_coordination(doc) -> list[int]:
    """A coordinating conjunction with nothing on its left: at the start of the caption, or right after another
    (different) conjunction ("and but"); "and and" is left to ``repeated_word``, a final "and" to ``dangling_end``.

    Catches "**and** a dog on the bench", "a dog and **but** a cat"; must not flag "a dog and a cat",
    "black and white".

    >>> from analysis.linguistics import parse
    >>> empty_coordination(parse(["and a dog on a bench"])[0]), empty_coordination(parse(["a dog and a cat"])[0])
    ([0], [])
    """
    toks = [t for t in _words(doc) if not _is_punct(t)]
    out = []
    for k, t in enumerate(toks):
        if t.lower_ not in CONJUNCTIONS or t.pos_ != "CCONJ":
            continue
        if k == 0 or (toks[k - 1].lower_ in CONJUNCTIONS and toks[k - 1].lower_ != t.lower_):
            out.append(t.i)
    return out


def but_without_contrast(doc) -> list[int]:
    """"but" joining two noun phrases with no negation anywhere: noun-phrase coordination with *but* needs a
    contrast marked by a negative ("not a dog but a cat", "a dog but no cat"); without one it is the degenerate
    "X but Y" list of Ma et al.'s Figure 1. Clauses ("a dog sleeps but a cat plays"), adjectives ("small but
    sturdy"), prepositional phrases ("but with no driver") and "but" meaning *except* ("all but one") are fine.

    Catches "a bunch **but** a bananas", "a dog **but** a cat"; must not flag "a small but sturdy table",
    "a dog but no cat", "a dog is sleeping but a cat is awake".

    >>> from analysis.linguistics import parse
    >>> (but_without_contrast(parse(["a dog but a cat"])[0]),
    ...  but_without_contrast(parse(["a small but sturdy table"])[0]))
    ([2], [])
    """
    toks = _words(doc)
    if any(t.lower_ in NEGATORS for t in toks):
        return []
    out = []
    for k, t in enumerate(toks):
        if t.lower_ != "but" or k == 0 or k + 1 >= len(toks) or toks[k - 1].lower_ in BUT_EXCEPT:
            continue
        right = []
        for u in toks[k + 1:]:
            if u.pos_ == "CCONJ" or _is_punct(u):
                break
            right.append(u)
        if not right or any(u.tag_ in ("VBZ", "VBP", "VBD", "MD") for u in right):
            continue
        first = right[0]
        if first.pos_ in ("DET", "NUM", "NOUN", "PROPN", "PRON") and first.lower_ not in RELATIVES:
            out.append(t.i)
    return out


def _plural_noun_as_verb(head) -> bool:
    """The word after ``head`` is tagged VBZ but is the plural of a WordNet noun: likely the real head, mis-tagged
    ("two small mandarin oranges": *oranges* tagged as a verb)."""
    nxt = head.nbor(1) if head.i + 1 < len(head.doc) else None
    if nxt is None or nxt.tag_ != "VBZ":
        return False
    return noun_number_of_form(nxt.lower_, "NNS") == "pl"


def article_number(doc) -> list[int]:
    """A determiner whose number disagrees with its head noun: singular determiners (``SINGULAR_DETS``: a, an,
    one, 1, every, each, another, this, that) with a plural noun, or plural ones (``PLURAL_DETS``: two..ninety,
    digits > 1, several, many, these, those, both, few...) with a singular noun. The head is the first noun after
    the determiner that is not a compound modifier; its number is :func:`noun_number` (tagger and word form must
    agree, so unknown or ambiguous nouns are not judged). Not checked: after "a" + a quantity word ("a few dogs",
    "a dozen eggs"), a number after an article ("a two story building"), plural determiners before a compound
    ("two story building": a measure phrase), invariant and -s-singular nouns (``INVARIANT``: sheep, bus, glass),
    proper nouns; an article repeated ("a a") is left to ``repeated_word``.

    Catches "**a** dogs", "**an** bananas", "**two** dog", "**these** cat"; must not flag "a few dogs",
    "two sheep", "a bus", "a two year old child".

    >>> from analysis.linguistics import parse
    >>> article_number(parse(["two dog on a table"])[0]), article_number(parse(["a few dogs on a bus"])[0])
    ([0], [])
    """
    toks = _words(doc)
    out = []
    for k, t in enumerate(toks):
        low = t.lower_
        if low.isdigit():
            number = "sg" if int(low) == 1 else "pl"
        elif low in SINGULAR_DETS:
            if low in ("this", "that") and t.tag_ != "DT":
                continue
            if low == "one" and t.pos_ == "PRON":
                continue
            number = "sg"
        elif low in PLURAL_DETS:
            number = "pl"
        else:
            continue
        if t.pos_ == "CCONJ" or t.dep_ == "preconj":
            continue  # "both male and female"
        if k + 1 < len(toks) and toks[k + 1].lower_ == low:
            continue  # "a a": repeated_word
        if k > 0 and (low.isdigit() or low in NUMBER_WORDS) and toks[k - 1].lower_ in (
                "a", "an", "every", "each", "this", "that", "another"):
            continue  # "a two year old child", "a 3 piece suit"
        if low in ("a", "an") and k + 1 < len(toks) and toks[k + 1].lower_ in QUANTITY:
            continue
        head, compound, numbered = _noun_head(toks, k)
        if head is None or head.pos_ == "PROPN" or head.lower_ in INVARIANT:
            continue  # "a people" is a nation
        have = noun_number(head)
        if number == "sg" and have == "pl" and not numbered:
            out.append(t.i)
        elif number == "pl" and have == "sg" and not compound and not _plural_noun_as_verb(head):
            out.append(t.i)
    return out


def a_an_mismatch(doc) -> list[int]:
    """"a" before a vowel sound or "an" before a consonant sound, by :func:`expected_article` on the next word
    (``inflect``'s a/an rules; digits by their spoken form; acronyms and "h"-words pronounced either way are not
    checked).

    Catches "**an** banana", "**a** apple", "**an** unicorn"; must not flag "an hour", "a unicorn", "a one",
    "an 8".

    >>> from analysis.linguistics import parse
    >>> a_an_mismatch(parse(["an banana next to a apple"])[0]), a_an_mismatch(parse(["an hour and a unicorn"])[0])
    ([0, 4], [])
    """
    toks = _words(doc)
    out = []
    for k, t in enumerate(toks[:-1]):
        if t.lower_ not in ("a", "an") or (t.lower_ == "a" and t.pos_ != "DET"):
            continue
        nxt = toks[k + 1]
        if nxt.lower_ in ("a", "an", "the") or _is_punct(nxt):
            continue
        want = expected_article(nxt.text)
        if want is not None and want != t.lower_:
            out.append(t.i)
    return out


def _number_of(t) -> str | None:
    """``"sg"``/``"pl"`` of a subject token, or None where not decided."""
    low = t.lower_
    if low in ("he", "she", "it", "this", "that"):
        return "sg"
    if low in ("they", "we", "these", "those") or low in ALWAYS_PLURAL:
        return "pl"
    if t.pos_ != "NOUN":
        return None  # proper nouns are not judged ("the Trier Imperial Baths are")
    return noun_number(t)


def subject_verb_agreement(doc) -> list[int]:
    """A present-tense verb (or was/were) whose number disagrees with its subject: "is/was/has/does" or any VBZ
    verb with a plural subject, "are/were/have/do" or any VBP verb with a singular one. The subject is the
    ``nsubj`` of the verb's clause (for an auxiliary, of its head verb); "that/which/who" stand for the noun the
    relative clause hangs on; a subject coordinated with "and" is plural; after existential "there" the first
    noun after the verb decides ("there is a dog and two cats" is fine). Not checked: subjects with "of" + a
    plural ("a group of people are", "a bunch of bananas is"), invariant nouns, "I"/"you", numbers.

    A base-form verb (VB) heading a clause with a singular subject and no auxiliary is a missing -s ("a dog sit
    on the mat"), except after verbs taking a bare infinitive (``BARE_INFINITIVE``: "helping a child fly a kite").

    Catches "the dogs **is** running", "a dog **are** sitting", "there **are** a dog", "the people **is**";
    must not flag "a group of people are standing", "a dog and a cat are sleeping".

    >>> from analysis.linguistics import parse
    >>> (subject_verb_agreement(parse(["the dogs is running"])[0]),
    ...  subject_verb_agreement(parse(["the dogs are running"])[0]))
    ([2], [])
    """
    out = []
    for v in _tokens(doc):
        low = v.lower_
        if v.tag_ == "VB" and v.dep_ in ("ROOT", "relcl") and not any(
                c.dep_ in ("aux", "auxpass") for c in v.children) and not any(
                w.pos_ == "VERB" and w.lemma_.lower() in BARE_INFINITIVE for w in _tokens(doc) if w.i < v.i):
            subs = [c for c in v.children if c.dep_ == "nsubj"]
            if subs and _number_of(subs[0]) == "sg" and subs[0].lower_ not in ("this", "that"):
                out.append(v.i)  # "a dog sit on the mat": a base form where a finite verb is needed
            continue
        if (v.tag_ == "VBZ" and low.endswith("s")) or (low == "was" and v.tag_ == "VBD"):
            vnum = "sg"  # the form must agree with the tag: not "they purr" tagged VBZ
        elif (v.tag_ == "VBP" and not re.search(r"[^s]s$", low)) or (low == "were" and v.tag_ == "VBD"):
            vnum = "pl"
        else:
            continue
        if low in ("'s", "'re", "am") or v.tag_ == "POS":
            continue
        clause = v.head if v.dep_ in ("aux", "auxpass") else v
        expl = [c for c in clause.children if c.dep_ == "expl"]
        if expl:
            attrs = [c for c in clause.children if c.dep_ in ("attr", "nsubj", "dobj") and c.i > v.i]
            subj, coordinated = (attrs[0] if attrs else None), False
        else:
            subs = [c for c in clause.children if c.dep_ in ("nsubj", "nsubjpass")]
            subj = subs[0] if subs else None
            if subj is not None and subj.tag_ in ("WDT", "WP") and clause.dep_ == "relcl":
                subj = clause.head
            coordinated = subj is not None and any(c.dep_ == "conj" for c in subj.children) and any(
                c.dep_ == "cc" and c.lower_ == "and" for c in subj.children)
        if subj is None:
            continue
        lo, hi = sorted((subj.i, v.i))
        if any(w.text in (",", ";", ":", "(", "\u2013", "\u2014") for w in doc[lo:hi]):
            continue  # a comma between subject and verb: a parenthetical or a parse to distrust
        if any(c.dep_ == "prep" and c.lower_ == "of" for c in subj.children):
            continue  # partitive / collective: notional agreement either way
        snum = "pl" if coordinated else _number_of(subj)
        if snum is not None and snum != vnum:
            out.append(v.i)
    return out


def juxtaposed_noun_phrases(doc) -> list[int]:
    """Two noun phrases side by side with nothing joining them: a noun directly followed by an article
    ("a dog a cat a bench"). Fine: the second object of a two-object verb ("a man giving a dog a bone"),
    a reduced relative clause ("the toy the dog has"), measure phrases ("a dog the size of a pony").

    Catches "a dog **a** cat", "a closeup image a bunch"; must not flag "a man feeding a giraffe a leaf",
    "a dog, a cat and a bird".

    >>> from analysis.linguistics import parse
    >>> (juxtaposed_noun_phrases(parse(["a dog a cat"])[0]),
    ...  juxtaposed_noun_phrases(parse(["a man giving a dog a bone"])[0]))
    ([2], [])
    """
    toks = _tokens(doc)
    out = []
    for t, u in zip(toks, toks[1:]):
        if t.pos_ != "NOUN" or u.lower_ not in ARTICLES:
            continue  # a proper noun + "the" is an epithet: "Christ the Redeemer"
        if t.dep_ in ("dative", "compound", "npadvmod") or u.head.dep_ in ("nsubj", "nsubjpass") or \
                u.head.lower_ in MEASURE_NOUNS or u.is_sent_start or t.text.endswith("."):
            continue  # 2nd object, reduced relative, "today the ...", a new sentence
        if any(w.pos_ == "VERB" and w.lemma_.lower() in DITRANSITIVE for w in toks if w.i < t.i):
            continue
        out.append(u.i)
    return out


def plural_compound(doc) -> list[int]:
    """A regular plural noun used as the modifier of the noun right after it ("the bananas table"), which
    English forms with the singular ("the banana table") or a possessive ("the dogs' heads"). Plural-only and
    conventional plural modifiers are fine (``PLURAL_MODIFIER_OK``: "sports car", "kids menu", "glasses case").

    Catches "a bunch of the **bananas** table"; must not flag "a sports car", "a banana table".

    >>> from analysis.linguistics import parse
    >>> plural_compound(parse(["a bunch of the bananas table"])[0]), plural_compound(parse(["a sports car"])[0])
    ([4], [])
    """
    return [t.i for t in _tokens(doc)
            if t.dep_ == "compound" and t.head.i == t.i + 1 and t.head.pos_ == "NOUN" and t.head.lower_ not in
            ADJ_HEADS and t.lower_ not in PLURAL_MODIFIER_OK and noun_number(t) == "pl"]


def no_words(doc) -> list[int]:
    """A caption with no word at all (empty, or only punctuation/numbers): one error at position 0.

    Catches "" and "..."; must not flag "dog".

    >>> from analysis.linguistics import parse
    >>> no_words(parse([""])[0]), no_words(parse(["dog"])[0])
    ([0], [])
    """
    return [] if any(t.is_alpha for t in _tokens(doc)) else [0]


#: the rules, in the order they run: name -> function
CHECKS: dict[str, Callable] = {f.__name__: f for f in (
    repeated_word, repeated_phrase, determiner_without_noun, missing_verb, dangling_end,
    preposition_without_object, empty_coordination, but_without_contrast, article_number, a_an_mismatch,
    subject_verb_agreement, juxtaposed_noun_phrases, plural_compound, no_words)}

#: rule name -> one-line description (the "Measures" chapter's table)
RULES: dict[str, str] = {
    "repeated_word": "the same word twice in a row (\"a a\", \"the the\"); intensifiers like \"very very\" allowed",
    "repeated_phrase": "a 2-4 word phrase twice in a row (\"on a bench on a bench\")",
    "determiner_without_noun": "an article/possessive not followed by a noun phrase (\"a on the table\", "
                               "caption ending in \"the\")",
    "missing_verb": "a relative clause or modal with no verb (\"a dog that on the bench\", \"a man could on the "
                    "bench\"); bare noun phrases are never flagged",
    "dangling_end": "caption ends in a conjunction, preposition, subordinator or auxiliary (\"a dog and\", "
                    "\"a cat on\")",
    "preposition_without_object": "a preposition followed by a conjunction or auxiliary (\"a dog on and a cat\")",
    "empty_coordination": "a conjunction with nothing on its left (caption-initial \"and\", \"and but\")",
    "but_without_contrast": "\"but\" joining two noun phrases with no negation (\"a bunch but a bananas\")",
    "article_number": "determiner and noun disagree in number (\"a dogs\", \"an bananas\", \"two dog\")",
    "a_an_mismatch": "\"a\" before a vowel sound or \"an\" before a consonant sound (\"an banana\", \"a apple\")",
    "subject_verb_agreement": "present-tense verb disagrees with its subject (\"the dogs is\", \"a dog are\")",
    "juxtaposed_noun_phrases": "two noun phrases with nothing joining them (\"a dog a cat\")",
    "plural_compound": "a regular plural noun modifying the next noun (\"the bananas table\")",
    "no_words": "the caption has no word at all (empty or only punctuation)",
}
assert set(RULES) == set(CHECKS)


# ----------------------------------------------------------------------------- the API
def errors_of(doc) -> list[str]:
    """The rules that fire on one parsed caption, one entry per error, in token order."""
    found = sorted((i, n, name) for n, (name, rule) in enumerate(CHECKS.items()) for i in rule(doc))
    return [name for _, _, name in found]


def grammar_errors(captions: Sequence[str], *, batch_size: int = 256) -> "pd.DataFrame":
    """One row per caption: ``caption``, ``errors`` (int, the number of errors found) and ``rules`` (the rule
    that fired for each error, in the order of the words; names as in ``RULES``).

    >>> grammar_errors(["a dog on a bench", "a a dogs"])[["errors", "rules"]].values.tolist()
    [[0, []], [2, ['repeated_word', 'article_number']]]
    """
    import pandas as pd

    from analysis.linguistics import parse

    if isinstance(captions, str):
        raise TypeError("grammar_errors takes a list of captions, not one string: wrap it in a list")
    captions = list(captions)
    rules = [errors_of(d) for d in parse(captions, batch_size=batch_size)]
    return pd.DataFrame({"caption": captions, "errors": [len(r) for r in rules], "rules": rules},
                        columns=["caption", "errors", "rules"])


def validate(captions: Sequence[str], labels: Sequence) -> dict:
    """Precision and recall of the detector against ``labels`` (True/1 = ungrammatical) on ``captions``.

    A caption is flagged when it has at least one error. ``precision = tp/(tp+fp)``, ``recall = tp/(tp+fn)``,
    ``f1 = 2PR/(P+R) = 2tp/(2tp+fp+fn)`` (NaN where a denominator is 0). Also returns the indices of the
    ``false_positives`` (flagged but grammatical) and ``false_negatives`` (ungrammatical but not flagged), and the
    per-caption ``flagged`` list.
    """
    captions, labels = list(captions), list(labels)
    if len(captions) != len(labels):
        raise ValueError(f"{len(captions)} captions but {len(labels)} labels")
    truth = []
    for i, y in enumerate(labels):
        if isinstance(y, str) and y.strip() in ("0", "1"):
            y = int(y)
        if y not in (0, 1) or isinstance(y, float) and y != y:
            raise ValueError(f"label {i} is {y!r}: labels must be True/False or 1/0 (1 = ungrammatical)")
        truth.append(bool(y))
    flagged = [e > 0 for e in grammar_errors(captions)["errors"]]
    tp = sum(f and y for f, y in zip(flagged, truth))
    fp = sum(f and not y for f, y in zip(flagged, truth))
    fn = sum(y and not f for f, y in zip(flagged, truth))
    tn = len(truth) - tp - fp - fn
    nan = float("nan")
    p = tp / (tp + fp) if tp + fp else nan
    r = tp / (tp + fn) if tp + fn else nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan  # = 2PR/(P+R) where both are defined
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "n": len(truth), "precision": p, "recall": r, "f1": f1,
            "false_positives": [i for i, (f, y) in enumerate(zip(flagged, truth)) if f and not y],
            "false_negatives": [i for i, (f, y) in enumerate(zip(flagged, truth)) if y and not f],
            "flagged": flagged}
