"""A light language detector: writing system first, then stopword ratios for Latin-script text.

No model, no download: non-Latin scripts name their language (Han -> zh, kana -> ja, Hangul ->
ko, Cyrillic -> ru, Arabic, Hebrew, Devanagari, Greek, Thai); Latin-script text is scored by
the share of its words that are function words of English, Spanish, French, German, Italian,
Portuguese or Dutch (lists written for meddata). Telegraphic clinical shorthand with few
function words comes out ``unknown`` rather than wrong.
"""

from __future__ import annotations

import re
from collections import Counter

STOPWORDS: dict[str, frozenset[str]] = {
    lang: frozenset(words.split())
    for lang, words in {
        "en": "the of and to in is that it for was on are with as be this by at or from have an not but they "
              "which you he she we his her their has had were been can will would there what all if do does also "
              "than its these may more when who about into other only some such them then so no our your my could "
              "should being because after before while most any how am me just here where why up out over under "
              "very",
        "es": "de la que el en y los del las un por con una para es al lo como más pero sus le ya o este sí "
              "porque esta entre cuando muy sin sobre también me hasta hay donde quien desde todo nos durante "
              "todos uno les ni contra otros ese eso ante ellos esto antes algunos qué unos yo otro otras otra "
              "él tanto esa estos mucho quienes nada muchos cual poco ella estar estas algunas algo",
        "fr": "de la le et les des en un une du est que qui dans pour pas au sur par plus ne se ce il sont avec "
              "ou son mais comme on aux tout nous sa elle ses ont été cette leur peut être si deux dont fait ces "
              "aussi entre lui je vous leurs sans sous après avant chez",
        "de": "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an "
              "werden aus er hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum war "
              "haben nur oder aber vor zur bis mehr durch man sein wurde sei ich wir ihr",
        "it": "di e il la che in per un è del non con le si una da i al lo sono come più ma della anche gli "
              "nel alla dei se ha questo delle o nella sua essere tra questa cui quando molto stato suo loro già "
              "dopo degli sul sulla",
        "pt": "de a o que e do da em um para é com não uma os no se na por mais as dos como mas foi ao ele das "
              "tem à seu sua ou ser quando muito há nos já está eu também só pelo pela até isso ela entre era "
              "depois sem mesmo aos ter seus quem nas esse eles estão você",
        "nl": "de en van het een in is dat op te zijn voor met die niet aan er om ook als dan maar bij of uit "
              "nog wel naar kan door over zo zij hij worden wordt deze was heeft hebben werd zich al meer geen "
              "tot",
    }.items()
}

_SCRIPTS: tuple[tuple[str, re.Pattern], ...] = (
    ("kana", re.compile(r"[\u3040-\u30ff]")),
    ("zh", re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")),
    ("ko", re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")),
    ("ru", re.compile(r"[\u0400-\u04ff]")),
    ("ar", re.compile(r"[\u0600-\u06ff\u0750-\u077f]")),
    ("he", re.compile(r"[\u0590-\u05ff]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
    ("el", re.compile(r"[\u0370-\u03ff]")),
    ("th", re.compile(r"[\u0e00-\u0e7f]")),
)
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
MIN_WORDS = 3
LANGUAGES = (*STOPWORDS, "zh", "ja", "ko", "ru", "ar", "he", "hi", "el", "th")


def detect(text: str, sample_chars: int = 5000) -> tuple[str, float]:
    """``(language, score)``; ``("unknown", score)`` when no language stands out.

    The score is the share of letters in the detected script for non-Latin text, and the share
    of words that are the language's function words for Latin text (0.3–0.5 in ordinary prose).
    """
    text = text[:sample_chars]
    latin = len(_LATIN.findall(text))
    counts = Counter({name: len(pat.findall(text)) for name, pat in _SCRIPTS})
    letters = latin + sum(counts.values())
    if letters == 0:
        return "unknown", 0.0
    script, n = counts.most_common(1)[0]
    if n > latin:
        if script in ("kana", "zh"):
            script = "ja" if counts["kana"] >= 0.1 * (counts["kana"] + counts["zh"]) else "zh"
            n = counts["kana"] + counts["zh"]
        return script, round(n / letters, 4)
    # One-letter words ("a", "i", "e", "o", "y") are articles or pronouns in several languages.
    words = [w.lower() for w in _WORD.findall(text) if len(w) > 1]
    if len(words) < MIN_WORDS:
        return "unknown", 0.0
    scores = {lang: sum(w in stop for w in words) / len(words) for lang, stop in STOPWORDS.items()}
    best = max(scores, key=scores.get)  # ties go to the first language listed (English)
    return best, round(scores[best], 4)
