"""`analyze` against a local chat-completions server (tests/fake_llm.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from contracts import Segment
from contracts.result import ActionItem, Decision
from processing_service.analyze import llm as llm_client
from processing_service.analyze.notes import LlmSettings, analyze, offline_analysis
from tests.support.fake_llm import Answer, FakeLlm, Raw, Slow, Status

API_KEY = "sk-test-0123456789abcdef"

SEGMENTS = [
    Segment(0.0, 4.0, "Let's plan the mobile app launch.", "SPEAKER_00"),
    Segment(4.0, 8.0, "I will update the release notes by Friday.", "SPEAKER_01"),
    Segment(8.0, 12.0, "Okay, let's go with the open source analytics tool.", "SPEAKER_00"),
]

GOOD: dict[str, Any] = {
    "summary": "The team planned the mobile app launch and chose an analytics tool.",
    "action_items": [
        {
            "text": "Update the release notes",
            "owner": "SPEAKER_01",
            "due": "by Friday",
            "segment_index": 1,
        }
    ],
    "decisions": [{"text": "Use the open source analytics tool", "segment_index": 2}],
    "keywords": ["Mobile App", "analytics", "analytics"],
}


@pytest.fixture
def llm() -> Iterator[FakeLlm]:
    with FakeLlm(api_key=API_KEY) as server:
        yield server


def settings(server: FakeLlm, **overrides: Any) -> LlmSettings:
    options: dict[str, Any] = {"timeout_s": 2.0, "max_attempts": 3, "backoff_s": 0.05}
    options.update(overrides)
    return LlmSettings(
        base_url=server.base_url, api_key=API_KEY, model="meeting-notes-7b", **options
    )


def assert_offline(result: tuple[Any, list[str]], fragment: str) -> None:
    analysis, warnings = result
    assert analysis == offline_analysis(SEGMENTS)
    assert len(warnings) == 1
    assert "used the offline analysis" in warnings[0]
    assert fragment in warnings[0]
    assert API_KEY not in warnings[0]


def test_a_valid_answer_is_used_and_the_request_is_well_formed(llm: FakeLlm) -> None:
    llm.script(Answer(json.dumps(GOOD)))
    analysis, warnings = analyze(SEGMENTS, llm=settings(llm))
    assert warnings == []
    assert analysis.summary == GOOD["summary"]
    assert analysis.action_items == [
        ActionItem("Update the release notes", "SPEAKER_01", "by Friday", 1)
    ]
    assert analysis.decisions == [Decision("Use the open source analytics tool", 2)]
    assert analysis.keywords == ["mobile app", "analytics"]

    [request] = llm.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    body = request.body
    assert body["model"] == "meeting-notes-7b"
    assert body["response_format"]["type"] == "json_schema"
    schema = body["response_format"]["json_schema"]["schema"]
    assert set(schema["required"]) == {"summary", "action_items", "decisions", "keywords"}
    assert schema["properties"]["action_items"]["items"]["required"] == [
        "text",
        "owner",
        "due",
        "segment_index",
    ]
    transcript = body["messages"][-1]["content"]
    assert "[1] SPEAKER_01: I will update the release notes by Friday." in transcript


def test_plain_json_content_in_a_code_fence_is_accepted(llm: FakeLlm) -> None:
    llm.script(Answer("```json\n" + json.dumps(GOOD) + "\n```"))
    analysis, warnings = analyze(SEGMENTS, llm=settings(llm))
    assert warnings == []
    assert analysis.summary == GOOD["summary"]


def test_a_server_error_is_retried_and_the_next_answer_used(llm: FakeLlm) -> None:
    llm.script(Status(500), Status(429), Answer(json.dumps(GOOD)))
    analysis, warnings = analyze(SEGMENTS, llm=settings(llm))
    assert warnings == []
    assert analysis.summary == GOOD["summary"]
    assert len(llm.requests) == 3


def test_a_server_without_json_schema_support_is_asked_again_without_it(llm: FakeLlm) -> None:
    llm.script(Status(400), Answer(json.dumps(GOOD)))
    analysis, warnings = analyze(SEGMENTS, llm=settings(llm))
    assert warnings == []
    assert analysis.summary == GOOD["summary"]
    first, second = llm.requests
    assert "response_format" in first.body
    assert "response_format" not in second.body


def test_persistent_server_errors_fall_back_after_all_attempts(llm: FakeLlm) -> None:
    llm.script(Status(503))
    assert_offline(analyze(SEGMENTS, llm=settings(llm)), "HTTP 503, after 3 attempts")
    assert len(llm.requests) == 3


def test_invalid_json_falls_back(llm: FakeLlm) -> None:
    llm.script(Answer("Sure! Here are your notes: summary = launch"))
    assert_offline(analyze(SEGMENTS, llm=settings(llm)), "not JSON")
    assert len(llm.requests) == 1


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        ({**GOOD, "summary": 42}, "$.summary"),
        ({**GOOD, "action_items": [{"text": "x", "segment_index": "one"}]}, "segment_index"),
        ({**GOOD, "decisions": [{"text": "Use it", "segment_index": 99}]}, "segment_index 99"),
        ({**GOOD, "summary": "   "}, "empty summary"),
        ({"action_items": []}, "summary"),
    ],
)
def test_schema_violations_fall_back(llm: FakeLlm, answer: dict[str, Any], fragment: str) -> None:
    llm.script(Answer(json.dumps(answer)))
    assert_offline(analyze(SEGMENTS, llm=settings(llm)), fragment)


def test_a_body_that_is_no_chat_completion_falls_back(llm: FakeLlm) -> None:
    llm.script(Raw(b"<html>gateway</html>"))
    assert_offline(analyze(SEGMENTS, llm=settings(llm)), "not a chat completion")


def test_a_slow_endpoint_times_out_and_falls_back(llm: FakeLlm) -> None:
    llm.script(Slow(10.0, Answer(json.dumps(GOOD))))
    started = time.monotonic()
    result = analyze(SEGMENTS, llm=settings(llm, timeout_s=0.3, max_attempts=2))
    assert time.monotonic() - started < 3.0
    assert_offline(result, "no answer within 0.3 s, after 2 attempts")
    assert len(llm.requests) == 2


def test_a_wrong_key_is_not_retried_and_never_shown(llm: FakeLlm) -> None:
    wrong = LlmSettings(llm.base_url, "sk-wrong-secret", "m", timeout_s=2.0, backoff_s=0.05)
    analysis, warnings = analyze(SEGMENTS, llm=wrong)
    assert analysis == offline_analysis(SEGMENTS)
    assert warnings == ["the LLM endpoint failed (HTTP 401); used the offline analysis"]
    assert len(llm.requests) == 1
    assert "sk-wrong-secret" not in repr(wrong)


def test_an_unreachable_endpoint_falls_back() -> None:
    with FakeLlm() as server:
        base_url = server.base_url
    unreachable = LlmSettings(base_url, API_KEY, "m", timeout_s=1.0, max_attempts=2, backoff_s=0.01)
    analysis, warnings = analyze(SEGMENTS, llm=unreachable)
    assert analysis == offline_analysis(SEGMENTS)
    assert warnings == [
        "the LLM endpoint failed (connection refused, after 2 attempts); used the offline analysis"
    ]


def test_an_empty_transcript_needs_no_endpoint(llm: FakeLlm) -> None:
    analysis, warnings = analyze([], llm=settings(llm))
    assert (analysis.summary, analysis.action_items, warnings) == ("", [], [])
    assert llm.requests == []


def test_without_a_key_no_authorization_header_is_sent() -> None:
    with FakeLlm(api_key=None, script=[Answer(json.dumps(GOOD))]) as server:
        keyless = LlmSettings(server.base_url, None, "m", timeout_s=2.0)
        analysis, warnings = analyze(SEGMENTS, llm=keyless)
        assert (analysis.summary, warnings) == (GOOD["summary"], [])
        assert "Authorization" not in server.requests[0].headers


def test_a_transcript_too_long_for_the_prompt_is_not_sent(
    llm: FakeLlm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llm_client, "MAX_TRANSCRIPT_CHARS", 50)
    assert_offline(analyze(SEGMENTS, llm=settings(llm)), "not sent to the LLM")
    assert llm.requests == []


def test_an_unexpected_error_falls_back(llm: FakeLlm, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError(API_KEY)

    monkeypatch.setattr(llm_client, "request_analysis", broken)
    assert_offline(analyze(SEGMENTS, llm=settings(llm)), "failed unexpectedly (RuntimeError)")
