"""The frame-based diarization error rate helper (tests/der.py) on hand-made cases."""

from __future__ import annotations

import pytest

pytest.importorskip("numpy")
pytest.importorskip("scipy")

from tests.support.der import diarization_error_rate

REFERENCE = [(0.0, 4.0, "alice"), (5.0, 8.0, "bob"), (9.0, 10.0, "alice")]  # 8 s of speech


def test_perfect_hypothesis_scores_zero() -> None:
    result = diarization_error_rate(REFERENCE, REFERENCE)
    assert result.der == 0.0
    assert result.total == pytest.approx(8.0)
    assert result.mapping == {"alice": "alice", "bob": "bob"}


def test_label_names_do_not_matter() -> None:
    # The hypothesis calls alice "B" and bob "A": the optimal mapping undoes the swap.
    hypothesis = [(0.0, 4.0, "B"), (5.0, 8.0, "A"), (9.0, 10.0, "B")]
    result = diarization_error_rate(REFERENCE, hypothesis)
    assert result.der == 0.0
    assert result.mapping == {"B": "alice", "A": "bob"}


def test_missed_speaker() -> None:
    # Bob's 3 s are never detected: 3 s missed out of 8 s.
    result = diarization_error_rate(REFERENCE, [(0.0, 4.0, "x"), (9.0, 10.0, "x")])
    assert result.missed == pytest.approx(3.0)
    assert result.false_alarm == result.confusion == 0.0
    assert result.der == pytest.approx(3 / 8)


def test_false_alarm() -> None:
    # Speech claimed in the 4-5 s pause (1 s) and after the end (2 s).
    hypothesis = [*REFERENCE, (4.0, 5.0, "alice"), (10.0, 12.0, "bob")]
    result = diarization_error_rate(REFERENCE, hypothesis)
    assert result.false_alarm == pytest.approx(3.0)
    assert result.missed == result.confusion == 0.0
    assert result.der == pytest.approx(3 / 8)


def test_confusion() -> None:
    # Alice's last second is attributed to bob's label.
    hypothesis = [(0.0, 4.0, "s1"), (5.0, 8.0, "s2"), (9.0, 10.0, "s2")]
    result = diarization_error_rate(REFERENCE, hypothesis)
    assert result.confusion == pytest.approx(1.0)
    assert result.missed == result.false_alarm == 0.0
    assert result.der == pytest.approx(1 / 8)
    assert result.mapping == {"s1": "alice", "s2": "bob"}


def test_everything_one_label_confuses_the_minority() -> None:
    hypothesis = [(0.0, 10.0, "one")]
    result = diarization_error_rate(REFERENCE, hypothesis)
    # 3 s of bob confused, 2 s of pauses (4-5, 8-9) are false alarms.
    assert result.confusion == pytest.approx(3.0)
    assert result.false_alarm == pytest.approx(2.0)
    assert result.der == pytest.approx(5 / 8)


def test_extra_hypothesis_speaker_is_confusion() -> None:
    # A third label takes half of bob's turn: no reference speaker is left for it.
    hypothesis = [(0.0, 4.0, "a"), (5.0, 6.5, "b"), (6.5, 8.0, "c"), (9.0, 10.0, "a")]
    result = diarization_error_rate(REFERENCE, hypothesis)
    assert result.confusion == pytest.approx(1.5)
    assert result.der == pytest.approx(1.5 / 8)
    assert "c" not in result.mapping


def test_overlapping_speech_counts_per_speaker() -> None:
    reference = [(0.0, 4.0, "alice"), (2.0, 6.0, "bob")]  # 2 s overlap: 8 s in total
    only_alice = [(0.0, 4.0, "a")]
    result = diarization_error_rate(reference, only_alice)
    assert result.total == pytest.approx(8.0)
    assert result.missed == pytest.approx(4.0)
    assert result.der == pytest.approx(0.5)


def test_collar_forgives_boundary_errors() -> None:
    # Every boundary off by 0.2 s: 6 x 0.2 s of errors without a collar, none with 0.25 s.
    shifted = [(s + 0.2, e + 0.2, spk) for s, e, spk in REFERENCE]
    assert diarization_error_rate(REFERENCE, shifted).der == pytest.approx(6 * 0.2 / 8)
    assert diarization_error_rate(REFERENCE, shifted, collar=0.25).der == 0.0


def test_accepts_turn_objects_and_empty_hypothesis() -> None:
    from tests.support.diarization_audio import Turn  # noqa: PLC0415

    reference = [Turn(s, e, spk) for s, e, spk in REFERENCE]
    result = diarization_error_rate(reference, [])
    assert result.der == 1.0
    assert result.missed == pytest.approx(8.0)
    assert diarization_error_rate([], []).der == 0.0
    with pytest.raises(ValueError):
        diarization_error_rate([(2.0, 1.0, "a")], [])
