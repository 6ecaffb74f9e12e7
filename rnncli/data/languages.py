"""The rules of the languages the word tokenizer knows (config.STEMMERS lists them, with the
Snowball stemmer of each): the elided articles and pronouns French and Italian write onto the next word (l'école, dell'arte),
and detection of a text's language from its commonest short words.
"""

from __future__ import annotations

from collections import Counter

# Elided words, as written before an apostrophe: "l'" in "l'école". They become tokens of their
# own ("l'" then "école"), so "école" is one word however it was introduced.
ELISIONS = {
    "fr": frozenset({"l", "d", "j", "m", "n", "s", "t", "c", "qu", "jusqu", "lorsqu", "puisqu", "quoiqu"}),
    "it": frozenset({"l", "d", "dell", "all", "dall", "nell", "sull", "coll", "un", "c", "quest", "quell", "cos"}),
    "ca": frozenset({"l", "d", "s", "m", "t", "n"}),
}
# Words whose apostrophe is not an elision.
KEEP_WHOLE = frozenset({"aujourd'hui", "prud'homme", "prud'hommes", "presqu'île", "presqu'îles", "quelqu'un",
                        "quelqu'une", "entr'acte", "entr'actes"})

# The commonest short words of each language: in running text they make up a fifth to a third of
# the words, and few of them are shared (detection weighs the lists against each other).
FUNCTION_WORDS = {
    "en": "the of and to a in is that it for was on with as he be at by this had not are but from have you",
    "fr": "le la les de des et est un une que qui dans pour pas du en au il elle ne se sur ce avec plus son",
    "de": "der die und das ist nicht ein eine zu den von mit sich des auf für im dem ich es auch wie",
    "es": "el la los las de que y en es por con no una un del se para al lo como más pero su",
    "it": "il la di che e è per non un una del della le si in con sono anche ma come più gli",
    "pt": "o a os de que e não um uma para com do da em no na se por mais como mas ao",
    "nl": "de het een en van ik te dat is niet op zijn voor met die er maar om ook als",
}
_LISTS = {code: frozenset(words.split()) for code, words in FUNCTION_WORDS.items()}
DETECT_TOKENS = 200_000  # words looked at: plenty to tell languages apart, cheap on any corpus
DETECT_MIN_SHARE = 0.08  # below this no list fits: the text is taken as English


def split_elisions(tokens: list[str], language: str) -> list[str]:
    """tokens with each elided word written onto the next split off: "l'école" -> "l'", "école"
    (a typographic apostrophe written as '). Only for languages that elide (ELISIONS)."""
    elided = ELISIONS.get(language)
    if not elided:
        return tokens
    out = []
    for token in tokens:
        while True:
            head, mark, rest = token.replace("’", "'").partition("'")
            if not mark or not rest or head not in elided or token.replace("’", "'") in KEEP_WHOLE:
                break
            out.append(head + "'")
            token = token[len(head) + 1:]
        out.append(token)
    return out


def detect_language(token_lists) -> tuple[str, str]:
    """(code, reason): the language whose commonest words make up the largest share of the first
    DETECT_TOKENS words, or English when none reaches DETECT_MIN_SHARE."""
    counts = Counter()
    seen = 0
    for tokens in token_lists:
        counts.update(tokens)
        seen += len(tokens)
        if seen >= DETECT_TOKENS:
            break
    if not seen:
        return "en", "auto: no words to read; English rules"
    shares = {code: sum(counts[w] for w in words) / seen for code, words in _LISTS.items()}
    best = max(shares, key=shares.get)
    runner = max((c for c in shares if c != best), key=shares.get)
    if shares[best] < DETECT_MIN_SHARE:
        return "en", (f"auto: no language's common words reach {DETECT_MIN_SHARE:.0%} of the text "
                      f"(at most {shares[best]:.0%}, {best}); English rules")
    return best, (f"auto: {shares[best]:.0%} of the words are common {best} words "
                  f"({runner}: {shares[runner]:.0%})")
