"""Times on the joined speech put back on the file's clock (`transcribe.speech.Speech`)."""

from __future__ import annotations

import numpy as np
import pytest

from processing_service.transcribe.speech import SAMPLE_RATE, Speech

#: Speech at 10-12 s and 100-103 s of a file: joined, 0-2 s and 2-5 s.
SPEECH = Speech([(10 * SAMPLE_RATE, 12 * SAMPLE_RATE), (100 * SAMPLE_RATE, 103 * SAMPLE_RATE)],
                np.zeros(5 * SAMPLE_RATE, dtype=np.float32))  # fmt: skip


@pytest.mark.parametrize(
    ("joined", "end", "file"),
    [
        (0.0, False, 10.0),
        (1.5, False, 11.5),
        (2.0, False, 100.0),  # where the spans meet: the later one starts
        (2.0, True, 12.0),  # ...and the earlier one ends
        (4.5, True, 102.5),
        (5.2, True, 103.2),  # whisper may time a last word a little past the audio
    ],
)
def test_a_joined_time_is_placed_in_its_span(joined: float, end: bool, file: float) -> None:
    assert SPEECH.position(joined, end=end) == pytest.approx(file)


def test_a_segment_is_cut_where_its_words_pass_to_the_next_span() -> None:
    words = [(0.5, 1.0, " Budget", 0.9), (1.1, 1.9, " review.", 0.8), (2.1, 2.6, " Next", 0.7)]
    restored = SPEECH.restore([(0.4, 2.7, " Budget review. Next", words)])
    first = [(10.5, 11.0, " Budget", 0.9), (11.1, 11.9, " review.", 0.8)]
    assert restored == [
        (10.5, 11.9, " Budget review.", first),
        (100.1, 100.6, " Next", [(100.1, 100.6, " Next", 0.7)]),
    ]


def test_a_segment_inside_one_span_keeps_its_text() -> None:
    words = [(2.5, 3.0, " Agreed", 0.9), (3.0, 3.4, ",", 0.5)]
    restored = SPEECH.restore([(2.2, 3.5, "Agreed,", words)])
    mapped = [(100.5, 101.0, " Agreed", 0.9), (101.0, 101.4, ",", 0.5)]
    assert restored == [(100.2, 101.5, "Agreed,", mapped)]
