"""assistant.text: spaCy sentence rules per language and the packaged language detector."""

from __future__ import annotations

import subprocess
import sys

import pytest

from assistant.text import detect_language, sentences, stems
from assistant.text.sentences import pipeline


def test_sentences_keep_abbreviations_and_numbers_in_english() -> None:
    text = "Dr. Smith paid $3.50 today. He left! Version 2.0 is out."
    assert sentences(text, "en") == ["Dr. Smith paid $3.50 today.", "He left!",
                                     "Version 2.0 is out."]


def test_sentences_split_chinese_full_stops_and_keep_mixed_numbers() -> None:
    assert sentences("今天很好。我们走吧！Version 2.0 is out.", "zh") == [
        "今天很好。", "我们走吧！", "Version 2.0 is out."]


def test_blank_lines_end_sentences_and_empty_text_gives_none() -> None:
    assert sentences("A title\n\nThe body starts here.", "en") == ["A title",
                                                                   "The body starts here."]
    assert sentences("   ", "en") == []


@pytest.mark.parametrize("lang", ["ja", "ko", "th", "qq", None])
def test_languages_needing_extras_or_unknown_fall_back_to_multilingual(lang: str | None) -> None:
    assert sentences("One. Two! 三。四？", lang) == ["One.", "Two!", "三。", "四？"]


def test_pipelines_are_cached() -> None:
    assert pipeline("fr") is pipeline("fr")


@pytest.mark.parametrize(("text", "code"), [
    ("The weather is lovely today and we are going out.", "en"),
    ("Tom is my friend.", "en"),
    ("Bonjour tout le monde, comment allez-vous ?", "fr"),
    ("Wie geht es dir heute?", "de"),
    ("¿Dónde está la estación? Es para mi madre", "es"),
    ("这是一个关于天气的句子。", "zh"),
    ("これは日本語です", "ja"),
    ("안녕하세요", "ko"),
    ("Привет, как дела? Сегодня хорошая погода.", "ru"),
])
def test_detect_language(text: str, code: str) -> None:
    assert detect_language(text) == code


def test_nothing_to_go_on_is_undetermined() -> None:
    assert detect_language("") == "und"
    assert detect_language("12345") == "und"


def test_importing_assistant_text_loads_neither_spacy_nor_lingua() -> None:
    code = ("import sys, assistant.text, assistant.context; "
            "print('spacy' in sys.modules, 'lingua' in sys.modules, "
            "'snowballstemmer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_stems_match_other_forms_of_a_word_in_languages_with_a_stemmer() -> None:
    assert stems(["pylons", "announced", "televised"], "en") == stems(
        ["pylon", "announcer", "television"], "en")
    assert stems(["chanteuses"], "fr") == stems(["chanteuse"], "fr")
    assert stems(["模型", "pylons"], "zh") == ["模型", "pylons"]  # none: words as they are
    assert stems(["pylons"], None) == ["pylons"]


def test_every_language_mapped_to_a_stemmer_has_one_and_stems_from_many_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    import snowballstemmer

    from assistant.text.language import LANGUAGES
    from assistant.text.words import _SNOWBALL, _stem

    assert set(_SNOWBALL) <= set(LANGUAGES)
    assert set(_SNOWBALL.values()) <= set(snowballstemmer.algorithms())
    forms = [f"{w}{end}" for w in ("announc", "televis", "gener", "oper") for end in
             ("ed", "er", "ing", "es", "ion", "ions", "ers", "ement")] * 50
    alone = stems(forms, "en")
    _stem.cache_clear()
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda w: stems([w], "en")[0], forms))
    assert together == alone
