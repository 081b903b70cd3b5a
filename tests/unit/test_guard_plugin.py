"""The bundled guards on their own: what the secrets guard finds, and that a reply streamed in
any pieces is redacted exactly as the whole text would be; the topics guard's words."""

from __future__ import annotations

import random

import pytest
from assistant_plugins.guard import Secrets, Topics, luhn

from assistant import Filtered, Turn, Verdict

KEY = "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4"
GITHUB = "ghp_" + "A" * 36
AWS = "AKIA" + "ABCDEFGHIJKLMNOP"
CARD = "4111 1111 1111 1111"
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0\nxyz\n"
       "-----END RSA PRIVATE KEY-----")
TEXT = (f"Here: {KEY}, and {GITHUB}.\nAWS {AWS}; card {CARD}, not 4111 1111 1111 1112.\n"
        f"{PEM}\nbye")
REDACTED = ("Here: [redacted:api_key], and [redacted:api_key].\nAWS [redacted:api_key]; "
            "card [redacted:card], not 4111 1111 1111 1112.\n[redacted:private_key]\nbye")


def stream(guard: Secrets | Topics, pieces: list[str]) -> tuple[str, list[Filtered]]:
    """Feed ``pieces`` as the daemon's filter chain does: the runner keeps what is held."""
    out, results, pending = [], [], ""
    for i, piece in enumerate([*pieces, ""]):
        final = i == len(pieces)
        pending += piece
        result = guard.filter(Turn("q"), pending, final)
        results.append(result)
        out.append(result.text)
        pending = pending[len(pending) - result.held:] if result.held else ""
        if result.stop:
            break
    return "".join(out), results


def test_luhn() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")


def test_secrets_of_each_kind_are_redacted_in_what_the_user_types() -> None:
    verdict = Secrets().check(Turn(TEXT))
    assert isinstance(verdict, Verdict) and verdict.action == "rewrite"
    assert verdict.text == REDACTED
    assert verdict.kinds == ("api_key", "card", "private_key")
    assert "5 secrets redacted" in verdict.reason


def test_plain_text_passes() -> None:
    assert Secrets().check(Turn("call me at 555 1234, order 12345, sk-short")) is None


@pytest.mark.parametrize("seed", range(25))
def test_a_streamed_reply_is_redacted_as_the_whole_would_be_however_it_is_cut(
        seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(TEXT)), rng.randint(1, 60)))
    pieces = [TEXT[a:b] for a, b in zip([0, *cuts], [*cuts, len(TEXT)], strict=True)]
    text, _ = stream(Secrets(), pieces)
    assert text == REDACTED
    assert KEY[:12] not in text and "MIIE" not in text


def test_a_reply_is_held_back_only_while_it_may_be_a_secret() -> None:
    guard = Secrets()
    for pending, held in [("Hello there, partial", 0), ("Hello there. ", 0),
                          ("the key: sk-ab", 5), ("is gh", 2), ("call 555 12", 6),
                          ("x.AKIA12", 6), ("well -----BEG", 8), ("so -", 1)]:
        assert guard.filter(Turn("q"), pending, False) == Filtered(
            pending[:len(pending) - held], held=held), pending


def test_an_unended_private_key_is_redacted_to_the_end() -> None:
    text, _ = stream(Secrets(), ["Key:\n-----BEGIN PRIVATE KEY-----\nMII", "Eabc\n"])
    assert text == "Key:\n[redacted:private_key]"


def test_rules_switch_off_and_patterns_of_ones_own() -> None:
    guard = Secrets()
    guard.configure({"off": ["card"], "patterns": [r"ACME-\d{6}"]})
    verdict = guard.check(Turn(f"ACME-123456 and {CARD}"))
    assert verdict is not None and verdict.text == f"[redacted:pattern] and {CARD}"
    # While patterns are set the reply is held to the end of its line.
    text, _ = stream(guard, ["id ACME-12", "3456 ok\nnext"])
    assert text == "id [redacted:pattern] ok\nnext"
    guard.configure({"enabled": False})
    assert not guard.enabled


@pytest.mark.parametrize("config, message", [
    ({"off": ["cards"]}, "unknown kind 'cards'"),
    ({"patterns": ["("]}, "patterns[0] '(' is not a regular expression"),
    ({"enabld": True}, "[guards.secrets] enabld"),
])
def test_a_bad_setting_names_the_key(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        Secrets().configure(config)


def test_topics_block_whole_words_and_phrases_case_insensitively() -> None:
    guard = Topics()
    assert not guard.enabled  # nothing blocked: never called
    guard.configure({"blocked": ["zebras", "pet  rocks"], "reason": "Not here."})
    assert guard.enabled
    verdict = guard.check(Turn("Tell me about PET rocks"))
    assert verdict == Verdict.block("Not here.", ("pet rocks",))
    assert guard.check(Turn("zebrastripes are fine")) is None


def test_topics_stop_a_reply_before_the_word_however_it_is_cut() -> None:
    guard = Topics()
    guard.configure({"blocked": ["pet rocks"]})
    text, results = stream(guard, ["I like ", "pet", " ro", "cks a lot"])
    assert text == "I like " and results[-1].stop == guard.reason
    text, _ = stream(guard, ["pet rockstars ", "are fine"])
    assert text == "pet rockstars are fine"
