"""Meeting notes from a transcript: summary, action items, decisions and keywords.

`analyze` works fully offline by default: a TextRank summary (the most central
sentences, in their original order), TextRank keyphrases, and the rules of
`meeting_rules` for action items and decisions. Everything is deterministic and needs
no model weights. With `LlmSettings` it asks an OpenAI-compatible chat endpoint instead
(see `llm_client`) and falls back to the offline notes, with a warning, when that fails.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence

import structlog

from contracts import Analysis, Segment
from processing_service.analyze import llm as llm_client
from processing_service.analyze.llm import LlmError
from processing_service.analyze.rules import (
    STOPWORDS,
    Sentence,
    find_action_items,
    find_decisions,
    split_sentences,
)
from processing_service.runtime.config import LlmSettings

log = structlog.get_logger("processing.analysis")

__all__ = ["LlmSettings", "analyze", "keywords", "offline_analysis", "summarize"]

SUMMARY_MAX_SENTENCES = 3
SUMMARY_MAX_CHARS = 600
MAX_KEYWORDS = 10
#: A sentence needs this many content words to be a summary candidate.
MIN_SUMMARY_CONTENT_WORDS = 3
DAMPING = 0.85
#: Longer transcripts rank only this many sentences, each linked to its closest neighbours.
MAX_SUMMARY_CANDIDATES = 1500
SUMMARY_NEIGHBOURS = 25
#: Content words this close in a sentence are linked in the keyword graph.
WINDOW = 3

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_PHRASE_BREAK = re.compile(r"[,;:()\[\]\"\u2013\u2014]|\s-\s|[.!?…](?:\s|$)")


def analyze(
    segments: list[Segment], *, llm: LlmSettings | None = None
) -> tuple[Analysis, list[str]]:
    """The meeting notes of `segments` and warnings (plain sentences) about how they were made.

    With `llm`, the chat endpoint writes the notes; if it fails or answers something
    invalid, the offline notes are returned with a warning that says why.
    """
    if not any(s.text.strip() for s in segments):
        return Analysis(summary=""), []
    warnings: list[str] = []
    if llm is not None:
        try:
            return llm_client.request_analysis(segments, llm), []
        except LlmError as err:
            warnings.append(err.warning(llm.api_key))
        except Exception as err:  # the LLM is an extra: it never fails the job
            log.exception("llm_analysis_crashed")
            warnings.append(
                f"the LLM request failed unexpectedly ({type(err).__name__});"
                " used the offline analysis"
            )
        log.warning("llm_analysis_fallback", reason=warnings[-1])
    return offline_analysis(segments), warnings


def offline_analysis(segments: Sequence[Segment]) -> Analysis:
    """Summary, action items, decisions and keywords by TextRank and rules, without models."""
    sentences = split_sentences(segments)
    return Analysis(
        summary=summarize(sentences),
        action_items=find_action_items(sentences),
        decisions=find_decisions(sentences),
        keywords=keywords(sentences),
    )


# -- text ---------------------------------------------------------------------------------


def _stem(token: str) -> str:
    """A light plural/possessive folding, so that "item" and "items" count as one word."""
    token = token.removesuffix("'s")
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def _is_content(token: str) -> bool:
    return (
        len(token) > 2
        and "'" not in token.removesuffix("'s")
        and not token.isdigit()
        and token not in STOPWORDS
        and _stem(token) not in STOPWORDS
    )


def _content_stems(text: str) -> list[str]:
    return [_stem(t) for t in _TOKEN.findall(text.lower()) if _is_content(t)]


def _pagerank(weights: Sequence[Mapping[int, float]], iterations: int = 100) -> list[float]:
    """Weighted PageRank over an undirected graph given as adjacency maps (node -> weight)."""
    n = len(weights)
    if n == 0:
        return []
    totals = [sum(w.values()) for w in weights]
    incoming = [[(j, w / totals[j]) for j, w in sorted(weights[i].items())] for i in range(n)]
    scores = [1.0 / n] * n
    for _ in range(iterations):
        new = [
            (1 - DAMPING) / n + DAMPING * sum(scores[j] * share for j, share in incoming[i])
            for i in range(n)
        ]
        delta = sum(abs(a - b) for a, b in zip(new, scores, strict=True))
        scores = new
        if delta < 1e-9:
            break
    return scores


def _sparsified(graph: Sequence[Mapping[int, float]], keep: int) -> list[dict[int, float]]:
    """Each node's `keep` strongest edges, and the edges that other nodes keep to it."""
    kept: list[dict[int, float]] = [{} for _ in graph]
    for a, edges in enumerate(graph):
        for b, weight in sorted(edges.items(), key=lambda e: (-e[1], e[0]))[:keep]:
            kept[a][b] = kept[b][a] = weight
    return kept


# -- summary ------------------------------------------------------------------------------


def summarize(
    sentences: Sequence[Sentence],
    max_sentences: int = SUMMARY_MAX_SENTENCES,
    max_chars: int = SUMMARY_MAX_CHARS,
) -> str:
    """The most central sentences (TextRank), in transcript order, within the bounds."""
    candidates = [
        (i, set(stems))
        for i, s in enumerate(sentences)
        if len(stems := _content_stems(s.text)) >= MIN_SUMMARY_CONTENT_WORDS
    ]
    if not candidates:
        candidates = [(i, set(_content_stems(s.text))) for i, s in enumerate(sentences)]
    if not candidates:
        return ""
    if len(candidates) > MAX_SUMMARY_CANDIDATES:
        # Very long transcripts: the sentences with the most content words compete.
        longest = sorted(candidates, key=lambda c: (-len(c[1]), c[0]))[:MAX_SUMMARY_CANDIDATES]
        candidates = sorted(longest)
    graph: list[dict[int, float]] = [{} for _ in candidates]
    for a, (_, words_a) in enumerate(candidates):
        for b in range(a + 1, len(candidates)):
            words_b = candidates[b][1]
            overlap = len(words_a & words_b)
            if overlap:
                weight = overlap / (math.log(len(words_a) + 1) + math.log(len(words_b) + 1))
                graph[a][b] = graph[b][a] = weight
    scores = _pagerank(_sparsified(graph, SUMMARY_NEIGHBOURS))
    wanted = min(max_sentences, max(1, math.ceil(len(candidates) / 5)))
    ranked = sorted(range(len(candidates)), key=lambda k: (-round(scores[k], 12), k))
    chosen: list[int] = []
    length = 0
    for k in ranked:
        text = sentences[candidates[k][0]].text
        if length + len(text) + len(chosen) <= max_chars:
            chosen.append(candidates[k][0])
            length += len(text)
        if len(chosen) == wanted:
            break
    if not chosen:
        text = sentences[candidates[ranked[0]][0]].text
        return text[: max_chars - 1].rsplit(" ", 1)[0] + "…"
    return " ".join(sentences[i].text for i in sorted(chosen))


# -- keywords -----------------------------------------------------------------------------


def _runs(sentence: Sentence) -> list[list[tuple[str, str]]]:
    """Maximal runs of content words (stem, surface), cut at stop words and punctuation."""
    runs: list[list[tuple[str, str]]] = []
    for part in _PHRASE_BREAK.split(sentence.text.lower()):
        run: list[tuple[str, str]] = []
        for token in _TOKEN.findall(part):
            if _is_content(token):
                run.append((_stem(token), token.removesuffix("'s")))
            elif run:
                runs.append(run)
                run = []
        if run:
            runs.append(run)
    return runs


def keywords(sentences: Sequence[Sentence], limit: int = MAX_KEYWORDS) -> list[str]:
    """Keyphrases by TextRank over word co-occurrence, lower-case and without repeats.

    Words are ranked on the graph of content words that occur within `WINDOW` content
    words of each other in a sentence; a candidate is a single word, or a phrase of up to
    three adjacent words seen at least twice, scored by its frequency times the mean rank
    of its words. A phrase takes the place of the single words it contains.
    """
    per_sentence = [_runs(s) for s in sentences]
    runs = [run for sentence_runs in per_sentence for run in sentence_runs]
    index: dict[str, int] = {}
    for run in runs:
        for stem, _ in run:
            index.setdefault(stem, len(index))
    graph: list[dict[int, float]] = [{} for _ in index]
    for sentence_runs in per_sentence:
        sequence = [index[stem] for run in sentence_runs for stem, _ in run]
        for pos, a in enumerate(sequence):
            for b in sequence[pos + 1 : pos + WINDOW]:
                if a != b:
                    graph[a][b] = graph[a].get(b, 0.0) + 1.0
                    graph[b][a] = graph[b].get(a, 0.0) + 1.0
    rank = _pagerank(graph)

    return _select(_candidates(runs, rank, index), limit)


def _candidates(
    runs: Sequence[Sequence[tuple[str, str]]], rank: Sequence[float], index: Mapping[str, int]
) -> list[tuple[float, tuple[str, ...], str]]:
    """(score, stems, written form) of each keyphrase candidate, best first."""
    phrases: Counter[tuple[str, ...]] = Counter()
    surfaces: dict[tuple[str, ...], Counter[str]] = {}
    for run in runs:
        for size in (1, 2, 3):
            for start in range(len(run) - size + 1):
                words = run[start : start + size]
                key = tuple(stem for stem, _ in words)
                if len(set(key)) == size:
                    phrases[key] += 1
                    surfaces.setdefault(key, Counter())[" ".join(s for _, s in words)] += 1
    return sorted(
        (
            -round(count * sum(rank[index[w]] for w in key) / len(key), 12),
            key,
            _surface(surfaces[key]),
        )
        for key, count in phrases.items()
        if len(key) == 1 or count >= 2
    )


def _select(candidates: Sequence[tuple[float, tuple[str, ...], str]], limit: int) -> list[str]:
    """The best `limit` candidates; a phrase replaces the chosen words or phrases it contains."""
    chosen: list[tuple[frozenset[str], str]] = []
    for _, key, text in candidates:
        words = frozenset(key)
        if any(words <= other for other, _ in chosen):
            continue
        contained = [k for k, (other, _) in enumerate(chosen) if other < words]
        if contained:
            chosen[contained[0]] = (words, text)
            chosen = [c for k, c in enumerate(chosen) if k not in contained[1:]]
        elif len(chosen) < limit:
            chosen.append((words, text))
    return [text for _, text in chosen]


def _surface(forms: Counter[str]) -> str:
    """The most frequent written form of a phrase; the first seen on a tie."""
    return max(forms.items(), key=lambda kv: kv[1])[0]
