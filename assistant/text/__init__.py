"""Text utilities skills share: sentence splitting (spaCy rules), language detection, words
and their stems.

Each imports its dependency (spaCy, lingua, snowballstemmer) on first use, never at import
time.
"""

from assistant.text.language import STOP_WORDS, detect_language
from assistant.text.sentences import sentences
from assistant.text.words import stems, words

__all__ = ["STOP_WORDS", "detect_language", "sentences", "stems", "words"]
