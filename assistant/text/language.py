"""Offline language detection: lingua's packaged n-gram models, plus a stop-word tie-breaker.

lingua's models ship inside its wheel. The low-accuracy mode (trigrams only) loads in about a
second for the languages below and is right on a sentence or more; on a few words it is not,
so for short Latin-script text a clear stop-word vote overrides an unsure lingua answer.
"""

from __future__ import annotations

import re
import threading
from typing import Any

UNDETERMINED = "und"
LANGUAGES = (
    "en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "nb", "fi", "pl", "cs", "ru", "uk",
    "tr", "ar", "he", "fa", "hi", "zh", "ja", "ko", "vi", "th", "id", "el", "hu", "ro",
)
SHORT = 60  # characters: below this, the stop-word vote may override lingua
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_WORD = re.compile(r"[a-zà-ÿß']+")
_STOPWORDS = {
    "en": "the and is are to of you what how this that it in for with please my i am was "
          "he she we they do does not have has be by on at from were an or but so",
    "fr": "le la les et est des un une je vous que qui pour dans ce cette avec mon ne pas "
          "il elle nous sont suis",
    "de": "der die das und ist nicht ich sie ein eine zu mit den von bitte mein er wir sind "
          "bin auf",
    "es": "el la los las y es de que un una por para con en este esta mi no yo está son",
    "it": "il lo la gli e di che un una per con non sono questo mio è ho",
    "pt": "o os as e de que um uma para com não em este esta meu você é eu",
}
_STOP = {lang: set(words.split()) for lang, words in _STOPWORDS.items()}
STOP_WORDS = frozenset().union(*_STOP.values())
_lock = threading.Lock()
_detector: Any = None


def _lingua() -> Any:
    global _detector
    with _lock:
        if _detector is None:
            from lingua import IsoCode639_1, LanguageDetectorBuilder

            codes = [getattr(IsoCode639_1, c.upper()) for c in LANGUAGES]
            _detector = (LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
                         .with_low_accuracy_mode().with_preloaded_language_models().build())
        return _detector


def stopword_vote(text: str) -> tuple[str, int]:
    """The Latin-script language with most stop words in ``text``, and how many it has."""
    words = _WORD.findall(text.lower())
    scores = {lang: sum(w in stop for w in words) for lang, stop in _STOP.items()}
    best = max(scores, key=lambda lang: scores[lang])
    return best, scores[best]


def detect_language(text: str) -> str:
    """An ISO 639-1 code for ``text``, or ``"und"`` when there is nothing to go on."""
    text = text.strip()
    if not text:
        return UNDETERMINED
    if _KANA.search(text):
        return "ja"
    if _HANGUL.search(text):
        return "ko"
    if len(_HAN.findall(text)) * 3 > len(text.replace(" ", "")):
        return "zh"
    sample = text[:2000]
    values = _lingua().compute_language_confidence_values(sample)
    best, confidence = (values[0].language, values[0].value) if values else (None, 0.0)
    code = best.iso_code_639_1.name.lower() if best is not None else UNDETERMINED
    if len(sample) < SHORT or confidence < 0.5:
        vote, hits = stopword_vote(sample)
        if hits >= 2 or (hits == 1 and code == UNDETERMINED):
            return vote
    return code if confidence >= 0.2 or len(sample) >= SHORT else UNDETERMINED
