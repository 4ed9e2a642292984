"""Meeting notes from an OpenAI-compatible chat endpoint (`POST {base_url}/chat/completions`).

The request asks for JSON matching `RESPONSE_SCHEMA` (through `response_format`, and in
the prompt for servers that ignore it); the answer is decoded with msgspec into the
`Analysis` contract and checked. Timeouts, connection errors, HTTP 429 and 5xx are
retried with exponential backoff; everything else that goes wrong raises `LlmError`,
whose warning never contains the API key. Only the standard library is used.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import msgspec

from contracts import Analysis, Segment
from contracts.result import ActionItem, Decision
from processing_service.runtime.config import LlmSettings

#: Transcripts longer than this are not sent; the offline notes are used instead.
MAX_TRANSCRIPT_CHARS = 200_000
MAX_KEYWORDS = 15
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
#: The longest Retry-After (seconds) that is honoured between attempts.
MAX_RETRY_AFTER_S = 10.0


class LlmError(Exception):
    """Why the LLM's notes are not used: `kind` is "input" (the transcript was not sent),
    "endpoint" (no usable HTTP answer) or "answer" (the answer was invalid)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason

    def warning(self, api_key: str | None = None) -> str:
        """A plain sentence for the result's warnings, with the API key masked if it crept in."""
        if self.kind == "input":
            text = (
                f"the transcript was not sent to the LLM ({self.reason}); used the offline analysis"
            )
        elif self.kind == "endpoint":
            text = f"the LLM endpoint failed ({self.reason}); used the offline analysis"
        else:
            text = f"the LLM answer was unusable ({self.reason}); used the offline analysis"
        return text.replace(api_key, "***") if api_key else text


_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_INDEX = {"type": ["integer", "null"]}
RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["summary", "action_items", "decisions", "keywords"],
    "properties": {
        "summary": {"type": "string"},
        "action_items": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["text", "owner", "due", "segment_index"],
                "properties": {
                    "text": {"type": "string"},
                    "owner": _NULLABLE_STRING,
                    "due": _NULLABLE_STRING,
                    "segment_index": _NULLABLE_INDEX,
                },
            },
        },
        "decisions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["text", "segment_index"],
                "properties": {"text": {"type": "string"}, "segment_index": _NULLABLE_INDEX},
            },
        },
        "keywords": {"type": "array", "items": {"type": "string"}},
    },
}

SYSTEM_PROMPT = """You write meeting notes from a transcript. Each transcript line is
"[segment index] speaker label: text" (the label is missing when speakers are unknown).
Answer with one JSON object only, no prose, matching this JSON schema:
{schema}
- summary: two to four sentences on what the meeting covered and concluded.
- action_items: tasks someone committed to or was asked to do. text: the task;
  owner: the speaker label (e.g. SPEAKER_01) or the person's name when it is clear,
  else null; due: the deadline as stated (e.g. "by Friday"), else null;
  segment_index: the index of the segment where the task is stated.
- decisions: what the meeting decided, each with its segment_index.
- keywords: up to 10 lower-case key topics.
Do not invent tasks, decisions, owners or deadlines that the transcript does not state."""


class _Message(msgspec.Struct):
    content: str | None = None
    refusal: str | None = None


class _Choice(msgspec.Struct):
    message: _Message


class _Completion(msgspec.Struct):
    choices: list[_Choice]


def transcript_text(segments: Sequence[Segment]) -> str:
    """The transcript as the prompt shows it: one "[i] SPEAKER: text" line per segment."""
    return "\n".join(
        f"[{i}] {s.speaker}: {s.text.strip()}" if s.speaker else f"[{i}] {s.text.strip()}"
        for i, s in enumerate(segments)
    )


def build_request(segments: Sequence[Segment], settings: LlmSettings, *, schema: bool) -> bytes:
    """The chat-completions request body; with `schema`, `response_format` asks for it."""
    body: dict[str, Any] = {
        "model": settings.model,
        "temperature": 0,
        "messages": [
            {
                "role": "system",
                "content": SYSTEM_PROMPT.format(schema=json.dumps(RESPONSE_SCHEMA)),
            },
            {"role": "user", "content": transcript_text(segments)},
        ],
    }
    if schema:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "meeting_notes", "strict": True, "schema": RESPONSE_SCHEMA},
        }
    return json.dumps(body).encode()


def request_analysis(segments: Sequence[Segment], settings: LlmSettings) -> Analysis:
    """The endpoint's meeting notes for `segments`, checked; raises `LlmError`."""
    if sum(len(s.text) for s in segments) > MAX_TRANSCRIPT_CHARS:
        raise LlmError("input", f"it is longer than {MAX_TRANSCRIPT_CHARS} chars")
    try:
        raw = _post(settings, build_request(segments, settings, schema=True))
    except _Rejected as rejected:
        if rejected.status != 400:
            raise LlmError("endpoint", f"HTTP {rejected.status}") from None
        # Some servers do not support json_schema; the schema is in the prompt as well.
        try:
            raw = _post(settings, build_request(segments, settings, schema=False))
        except _Rejected as again:
            raise LlmError("endpoint", f"HTTP {again.status}") from None
    return parse_answer(raw, len(segments))


class _Rejected(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _post(settings: LlmSettings, body: bytes) -> bytes:
    """POST `body`, retrying what may pass; `_Rejected` on a final 4xx, else `LlmError`."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if settings.api_key:
        headers["Authorization"] = f"Bearer {settings.api_key.strip()}"
    url = settings.base_url.rstrip("/") + "/chat/completions"
    if not url.startswith(("http://", "https://")):
        raise LlmError("endpoint", "the base URL is not http(s)")
    attempts = max(1, settings.max_attempts)
    problem = "no attempt made"
    wait = settings.backoff_s
    for attempt in range(attempts):
        if attempt:
            time.sleep(wait)
            wait = settings.backoff_s * 2**attempt
        try:
            data = _send(url, body, headers, settings.timeout_s)
        except urllib.error.HTTPError as err:
            status, retry_after = err.code, err.headers.get("Retry-After", "")
            err.close()
            if status != 429 and status < 500:
                raise _Rejected(status) from None
            problem = f"HTTP {status}"
            if retry_after.strip().isdigit():
                wait = max(wait, min(float(retry_after), MAX_RETRY_AFTER_S))
        except (http.client.HTTPException, OSError) as err:  # URLError and timeouts included
            problem = _describe(err, settings.timeout_s)
        except ValueError:
            # http.client rejects malformed URLs and header values; its message may quote
            # the header, so it is not repeated.
            raise LlmError(
                "endpoint", "the request is malformed (check base URL and API key)"
            ) from None
        else:
            return data
    plural = "s" if attempts > 1 else ""
    raise LlmError("endpoint", f"{problem}, after {attempts} attempt{plural}")


def _send(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> bytes:
    """One POST; the response body, or the urllib/http.client exception.

    The caller has checked that `url` is http(s), hence the S310 waivers.
    """
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        data: bytes = response.read(MAX_RESPONSE_BYTES + 1)
    if len(data) > MAX_RESPONSE_BYTES:
        raise LlmError("answer", f"the response is longer than {MAX_RESPONSE_BYTES} bytes")
    return data


def _describe(err: BaseException, timeout_s: float) -> str:
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, OSError) and reason.strerror:
        return f"connection error: {reason.strerror}"
    return f"connection error: {type(reason).__name__}"


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_answer(raw: bytes, n_segments: int) -> Analysis:
    """The `Analysis` in a chat-completions response body; raises `LlmError` if unusable."""
    try:
        completion = msgspec.json.decode(raw, type=_Completion)
    except msgspec.DecodeError:
        raise LlmError("answer", "the response is not a chat completion") from None
    if not completion.choices:
        raise LlmError("answer", "the response has no choices")
    message = completion.choices[0].message
    if message.refusal:
        raise LlmError("answer", "the model refused")
    content = (message.content or "").strip()
    fenced = _FENCE.match(content)
    if fenced:
        content = fenced.group(1)
    if not content:
        raise LlmError("answer", "the message is empty")
    try:
        analysis = msgspec.json.decode(content, type=Analysis)
    except msgspec.ValidationError as err:
        raise LlmError("answer", f"JSON does not match the schema: {err}") from None
    except msgspec.DecodeError:
        raise LlmError("answer", "the message is not JSON") from None
    return _checked(analysis, n_segments)


def _index(value: int | None, n_segments: int) -> int | None:
    if value is not None and not 0 <= value < n_segments:
        raise LlmError("answer", f"segment_index {value} is outside 0..{n_segments - 1}")
    return value


def _text(value: str, what: str) -> str:
    text = " ".join(value.split())
    if not text:
        raise LlmError("answer", f"an empty {what}")
    return text


def _optional(value: str | None) -> str | None:
    text = " ".join(value.split()) if value else ""
    return text if text and text.lower() not in ("null", "none", "n/a", "unknown") else None


def _checked(analysis: Analysis, n_segments: int) -> Analysis:
    """`analysis` tidied (whitespace, lower-case unique keywords), or `LlmError` if invalid."""
    keywords: list[str] = []
    for keyword in analysis.keywords:
        text = " ".join(keyword.lower().split())
        if text and text not in keywords:
            keywords.append(text)
    return Analysis(
        summary=_text(analysis.summary, "summary"),
        action_items=[
            ActionItem(
                text=_text(item.text, "action item"),
                owner=_optional(item.owner),
                due=_optional(item.due),
                segment_index=_index(item.segment_index, n_segments),
            )
            for item in analysis.action_items
        ],
        decisions=[
            Decision(_text(d.text, "decision"), _index(d.segment_index, n_segments))
            for d in analysis.decisions
        ],
        keywords=keywords[:MAX_KEYWORDS],
    )
