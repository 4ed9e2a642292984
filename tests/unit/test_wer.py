"""Unit tests for the word error rate helper used by the transcription tests."""

from __future__ import annotations

import pytest

from tests.support.wer import normalize_words, word_edit_distance, word_error_rate


def test_normalize_words_drops_case_and_punctuation() -> None:
    assert normalize_words("Hello, World!  It's 9 o\u2019clock.") == [
        "hello",
        "world",
        "it's",
        "9",
        "o'clock",
    ]


def test_identical_text_has_zero_error() -> None:
    assert word_error_rate("The cat sat.", " the CAT sat") == 0.0


@pytest.mark.parametrize(
    ("reference", "hypothesis", "distance"),
    [
        ("a b c d", "a x c d", 1),  # substitution
        ("a b c d", "a c d", 1),  # deletion
        ("a b c d", "a b y c d", 1),  # insertion
        ("a b c d", "b c d e", 2),  # deletion + insertion beats 4 substitutions
        ("a b c", "", 3),
        ("", "a b", 2),
    ],
)
def test_word_edit_distance(reference: str, hypothesis: str, distance: int) -> None:
    ref, hyp = reference.split(), hypothesis.split()
    assert word_edit_distance(ref, hyp) == distance
    assert word_edit_distance(hyp, ref) == distance


def test_word_error_rate_divides_by_reference_length() -> None:
    assert word_error_rate("one two three four", "one too three four") == pytest.approx(0.25)
    # Insertions can push the rate above 1.
    assert word_error_rate("yes", "yes yes yes") == pytest.approx(2.0)


def test_empty_reference_is_rejected() -> None:
    with pytest.raises(ValueError, match="no words"):
        word_error_rate(" ... ", "anything")
