"""Diarization error rate, frame-based (test helper, not service code).

DER = (missed speech + false alarm + speaker confusion) / total reference speech, where,
per frame with ``R`` reference and ``H`` hypothesis speakers of which ``C`` are correctly
mapped: miss ``max(0, R - H)``, false alarm ``max(0, H - R)``, confusion ``min(R, H) - C``
(NIST md-eval's definition; overlapping speech counts once per speaker). Hypothesis
labels are mapped one-to-one onto reference labels so as to maximise the time they
share (Hungarian algorithm over the co-occurrence matrix), so label names never matter.
An optional ``collar`` (seconds) excludes frames within that distance of any reference
turn boundary from scoring, as in md-eval and pyannote.metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

FRAME_S = 0.01


class TurnLike(Protocol):
    """Anything with ``start``, ``end`` (seconds) and ``speaker``."""

    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def speaker(self) -> str: ...


@dataclass(frozen=True)
class DerResult:
    """Components in seconds; ``der`` is their sum over ``total`` (reference speech)."""

    der: float
    missed: float
    false_alarm: float
    confusion: float
    total: float
    mapping: dict[str, str]  # hypothesis label -> reference label

    @property
    def missed_rate(self) -> float:
        return self.missed / self.total if self.total else 0.0

    @property
    def false_alarm_rate(self) -> float:
        return self.false_alarm / self.total if self.total else 0.0

    @property
    def confusion_rate(self) -> float:
        return self.confusion / self.total if self.total else 0.0


def _as_tuples(
    turns: Iterable[TurnLike | tuple[float, float, str]],
) -> list[tuple[float, float, str]]:
    out = []
    for t in turns:
        start, end, speaker = t if isinstance(t, tuple) else (t.start, t.end, t.speaker)
        if end < start:
            raise ValueError(f"turn ends before it starts: {start} > {end}")
        out.append((float(start), float(end), str(speaker)))
    return out


def _frame(seconds: float) -> int:
    return round(seconds / FRAME_S)


def _activity(turns: list[tuple[float, float, str]], labels: list[str], frames: int) -> Any:
    """(frames, speakers) boolean activity matrix."""
    matrix = np.zeros((frames, len(labels)), dtype=bool)
    index = {label: k for k, label in enumerate(labels)}
    for start, end, speaker in turns:
        matrix[_frame(start) : _frame(end), index[speaker]] = True
    return matrix


def diarization_error_rate(
    reference: Sequence[TurnLike | tuple[float, float, str]],
    hypothesis: Sequence[TurnLike | tuple[float, float, str]],
    *,
    collar: float = 0.0,
) -> DerResult:
    """Score ``hypothesis`` against ``reference`` (turns or ``(start, end, speaker)``)."""
    ref, hyp = _as_tuples(reference), _as_tuples(hypothesis)
    ref_labels = sorted({s for *_, s in ref})
    hyp_labels = sorted({s for *_, s in hyp})
    frames = _frame(max([e for _, e, _ in ref + hyp], default=0.0)) + 1
    r = _activity(ref, ref_labels, frames)
    h = _activity(hyp, hyp_labels, frames)
    scored = np.ones(frames, dtype=bool)
    if collar > 0:
        width = _frame(collar)
        for start, end, _ in ref:
            for edge in (_frame(start), _frame(end)):
                scored[max(0, edge - width) : edge + width] = False
    r, h = r[scored], h[scored]

    mapping: dict[str, str] = {}
    correct = np.zeros(len(r), dtype=np.int64)
    if ref_labels and hyp_labels:
        cooccurrence = r.T.astype(np.int64) @ h.astype(np.int64)  # (ref, hyp) shared frames
        rows, cols = linear_sum_assignment(cooccurrence, maximize=True)
        for i, j in zip(rows, cols, strict=True):
            if cooccurrence[i, j] > 0:
                mapping[hyp_labels[j]] = ref_labels[i]
                correct += r[:, i] & h[:, j]
    n_ref, n_hyp = r.sum(axis=1), h.sum(axis=1)
    missed = np.maximum(0, n_ref - n_hyp).sum() * FRAME_S
    false_alarm = np.maximum(0, n_hyp - n_ref).sum() * FRAME_S
    confusion = (np.minimum(n_ref, n_hyp) - correct).sum() * FRAME_S
    total = n_ref.sum() * FRAME_S
    errors = missed + false_alarm + confusion
    der = errors / total if total else (0.0 if errors == 0 else float("inf"))
    return DerResult(
        float(der), float(missed), float(false_alarm), float(confusion), float(total), mapping
    )


def turn_attribution(
    reference: Sequence[TurnLike | tuple[float, float, str]],
    hypothesis: Sequence[TurnLike | tuple[float, float, str]],
) -> float:
    """Share of reference speech (by time) in turns whose main hypothesis speaker is theirs.

    Each reference turn goes to the hypothesis label that overlaps it most; it counts as
    right when that label maps (one-to-one, as for DER) onto the turn's speaker. A turn no
    hypothesis overlaps counts as wrong. A word-free stand-in for word attribution.
    """
    ref, hyp = _as_tuples(reference), _as_tuples(hypothesis)
    mapping = diarization_error_rate(ref, hyp).mapping
    right = total = 0.0
    for start, end, speaker in ref:
        talk: dict[str, float] = {}
        for h_start, h_end, label in hyp:
            shared = min(end, h_end) - max(start, h_start)
            if shared > 0:
                talk[label] = talk.get(label, 0.0) + shared
        total += end - start
        if talk and mapping.get(max(talk, key=talk.__getitem__)) == speaker:
            right += end - start
    return right / total if total else 1.0
