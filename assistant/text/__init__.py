"""Text utilities skills share: sentence splitting (spaCy rules) and language detection.

Both import their heavy dependency (spaCy, lingua) on first use, never at import time.
"""

from assistant.text.language import detect_language
from assistant.text.sentences import sentences

__all__ = ["detect_language", "sentences"]
