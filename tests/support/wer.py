"""Word error rate for transcription tests (test helper, not service code)."""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def normalize_words(text: str) -> list[str]:
    """Lower-case ``text`` and split it into words, dropping punctuation.

    Apostrophes inside words are kept ("o'clock", "don't").
    """
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def word_edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance between two word lists (substitutions, insertions, deletions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, start=1):
            current.append(
                min(
                    previous[j] + 1,  # deletion of ref_word
                    current[j - 1] + 1,  # insertion of hyp_word
                    previous[j - 1] + (ref_word != hyp_word),  # match or substitution
                )
            )
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(S + D + I) / N over normalized words; N is the reference length (must be > 0)."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        raise ValueError("the reference has no words")
    return word_edit_distance(ref, hyp) / len(ref)
