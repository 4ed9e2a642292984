"""The client's pure parts: the event-stream reader, option encoding, problems, backoff,
Retry-After and webhook signatures (checked against notify's own signing)."""

from __future__ import annotations

import base64
import email.utils

import pytest

from audio_client.client import RetryPolicy, form_fields, is_url, option_values
from audio_client.errors import Problem
from audio_client.events import ServerSentEvent, parse_events
from contracts import JobOptions
from contracts.retry_after import retry_after_s
from contracts.webhook_signature import InvalidSignature, sign, verify

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode()


def test_events_are_dispatched_at_blank_lines_and_comments_skipped() -> None:
    lines = [
        ": keep-alive",
        "event: stage",
        'data: {"a":',
        "data: 1}",
        "",
        "event: end",
        "data:{}",
        "id: 7",
        "",
        "event: dropped-without-data",
        "",
        "data: unnamed",
        "",
        "event: unfinished",
        "data: never dispatched",
    ]
    assert list(parse_events(lines)) == [
        ServerSentEvent("stage", '{"a":\n1}'),
        ServerSentEvent("end", "{}", "7"),
        ServerSentEvent("message", "unnamed", "7"),
    ]


def test_only_the_options_a_client_set_are_sent() -> None:
    options = JobOptions(language="en", min_speakers=2, vocabulary=["Zorblax", "Kwint"])
    values = option_values(options)
    assert values == {"language": "en", "min_speakers": 2, "vocabulary": ["Zorblax", "Kwint"]}
    assert form_fields(values) == {
        "language": "en",
        "min_speakers": "2",
        "vocabulary": '["Zorblax","Kwint"]',
    }
    assert option_values(None) == {}


def test_urls_and_files_are_told_apart() -> None:
    assert is_url("https://example.com/a.wav")
    assert is_url("HTTP://example.com/a.wav")
    assert not is_url("meeting.wav")
    assert not is_url("ftp://example.com/a.wav")


def test_a_problem_keeps_its_extension_members() -> None:
    body = (
        b'{"type": "urn:x:result-not-ready", "title": "Result not ready", "status": 409,'
        b' "detail": "queued", "job_status": "queued"}'
    )
    problem = Problem.from_response(409, body)
    assert (problem.status, problem.title, problem.detail) == (409, "Result not ready", "queued")
    assert problem.extensions == {"job_status": "queued"}
    plain = Problem.from_response(502, b"<html>Bad gateway</html>")
    assert (plain.status, plain.title, plain.detail) == (
        502,
        "HTTP 502",
        "<html>Bad gateway</html>",
    )


def test_backoff_doubles_with_jitter_up_to_its_ceiling_and_retry_after_wins() -> None:
    policy = RetryPolicy(backoff_s=1.0, max_backoff_s=4.0, max_retry_after_s=60.0)
    for retry, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 4.0)]:
        delays = {policy.delay_s(retry, None) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1
    assert policy.delay_s(0, 7.0) == 7.0
    assert policy.delay_s(0, 3600.0) == 60.0


def test_retry_after_reads_seconds_and_dates() -> None:
    now = 1_800_000_000.0
    assert retry_after_s("5") == 5.0
    assert retry_after_s(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert retry_after_s(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert retry_after_s(None) is None
    assert retry_after_s("soon") is None
    assert retry_after_s("") is None


def _signed(body: bytes, timestamp: int = 1_800_000_000) -> dict[str, str]:
    return {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": "v1,bm90IGl0 " + sign(SECRET, "msg_1", timestamp, body),
    }


def test_a_signed_delivery_verifies_whatever_the_header_case() -> None:
    body = b'{"type": "job.completed"}'
    verify(SECRET, _signed(body), body, now=1_800_000_010)
    verify(SECRET, _signed(body, 1), body, tolerance_s=None)


@pytest.mark.parametrize(
    ("secret", "body", "now", "reason"),
    [
        (
            "whsec_" + base64.b64encode(b"another secret!!").decode(),
            b"{}",
            1_800_000_000,
            "no signature matches",
        ),
        (SECRET, b'{"tampered": 1}', 1_800_000_000, "no signature matches"),
        (SECRET, b"{}", 1_800_000_000 + 301, "beyond the 300 s tolerance"),
        (SECRET, b"{}", 1_800_000_000 - 301, "ahead"),
        ("whsec_not base64!", b"{}", 1_800_000_000, "not 'whsec_' followed by base64"),
    ],
)
def test_a_delivery_that_does_not_verify_says_why(
    secret: str, body: bytes, now: float, reason: str
) -> None:
    with pytest.raises(InvalidSignature, match=reason):
        verify(secret, _signed(b"{}"), body, now=now)


def test_missing_headers_and_foreign_signatures_are_named() -> None:
    with pytest.raises(InvalidSignature, match=r"missing header.*webhook-signature"):
        verify(SECRET, {"webhook-id": "a", "webhook-timestamp": "1"}, b"", tolerance_s=None)
    headers = _signed(b"{}") | {"Webhook-Signature": "v2,abc"}
    with pytest.raises(InvalidSignature, match="no v1 signature"):
        verify(SECRET, headers, b"{}", tolerance_s=None)
    with pytest.raises(InvalidSignature, match="not unix seconds"):
        verify(SECRET, _signed(b"{}") | {"Webhook-Timestamp": "later"}, b"{}")
