from __future__ import annotations

import pytest

from tests.der import diarization_error_rate

REF = [(0.0, 2.0, "a"), (2.0, 4.0, "b"), (4.0, 6.0, "a")]


def test_perfect_and_relabelled_hypotheses_score_zero() -> None:
    assert diarization_error_rate(REF, REF).der == pytest.approx(0.0)
    swapped = [(s, e, {"a": "x", "b": "y"}[k]) for s, e, k in REF]
    assert diarization_error_rate(REF, swapped).der == pytest.approx(0.0)


def test_a_missed_speaker_counts_as_missed_speech() -> None:
    result = diarization_error_rate(REF, [(0.0, 2.0, "x"), (4.0, 6.0, "x")])
    assert result.missed == pytest.approx(2.0, abs=0.02)
    assert result.der == pytest.approx(2.0 / 6.0, abs=0.01)


def test_false_alarm_and_confusion() -> None:
    extra = [*REF, (6.0, 7.0, "a")]
    assert diarization_error_rate(REF, extra).false_alarm == pytest.approx(1.0, abs=0.02)
    merged = [(0.0, 6.0, "x")]  # b's turn is attributed to a's label
    result = diarization_error_rate(REF, merged)
    assert result.confusion == pytest.approx(2.0, abs=0.02)
    assert result.der == pytest.approx(2.0 / 6.0, abs=0.01)


def test_a_collar_forgives_boundary_errors() -> None:
    shifted = [(0.0, 2.2, "a"), (2.2, 4.0, "b"), (4.0, 6.0, "a")]
    assert diarization_error_rate(REF, shifted).der > 0
    assert diarization_error_rate(REF, shifted, collar=0.25).der == pytest.approx(0.0, abs=0.01)
