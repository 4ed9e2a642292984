"""Contract round trips, schema evolution and clear rejection of unknown messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pytest

from contracts import (
    SCHEMA_VERSION,
    ContractError,
    JobOptions,
    JobSubmitted,
    ResultDocument,
    Segment,
    StageRequested,
    Word,
    decode_message,
    encode_message,
    message_from_builtins,
)
from contracts.events import EVENT_DECODER, JobFinished, StageFinished, event_id
from contracts.routing import EVENTS_EXCHANGE, STAGE_QUEUES, dead_letter_queue, job_event_key
from contracts.states import PIPELINE, REQUIRES, JobStatus, Stage, followers

SUBMITTED = JobSubmitted(
    job_id="5f0c7e1e-8a3c-4d0e-9a57-2f7d3f1c9b10",
    storage_path="uploads/5f0c7e1e-8a3c-4d0e-9a57-2f7d3f1c9b10.wav",
    original_filename="standup.wav",
    size_bytes=123_456,
    sha256="ab" * 32,
    content_type="audio/wav",
    submitted_at=datetime(2026, 11, 21, 9, 30, tzinfo=UTC),
    options=JobOptions(language="en", min_speakers=2, max_speakers=4, metadata={"k": [1, 2]}),
)


def test_job_submitted_round_trips_with_its_tag_and_version() -> None:
    data = encode_message(SUBMITTED)
    as_json = json.loads(data)
    assert as_json["type"] == "job.submitted"
    assert as_json["version"] == SCHEMA_VERSION
    assert decode_message(data) == SUBMITTED
    assert message_from_builtins(msgspec.to_builtins(SUBMITTED)) == SUBMITTED


def test_an_older_message_without_newer_fields_decodes_with_defaults() -> None:
    # What a producer that predates `options` and `version` would have written.
    old = {
        "type": "job.submitted",
        "job_id": SUBMITTED.job_id,
        "storage_path": SUBMITTED.storage_path,
        "original_filename": "standup.wav",
        "size_bytes": 10,
        "sha256": "00" * 32,
        "content_type": "audio/wav",
        "submitted_at": "2026-11-21T09:30:00Z",
    }
    message = decode_message(json.dumps(old))
    assert isinstance(message, JobSubmitted)
    assert message.options == JobOptions()
    assert message.version == SCHEMA_VERSION


def test_a_newer_message_with_unknown_fields_still_decodes() -> None:
    newer = msgspec.to_builtins(SUBMITTED) | {"priority": "high", "version": SCHEMA_VERSION + 1}
    newer["options"]["translate"] = True
    message = message_from_builtins(newer)
    assert message.job_id == SUBMITTED.job_id
    assert message.version == SCHEMA_VERSION + 1


def test_unknown_tag_is_rejected_with_a_clear_error() -> None:
    payload = msgspec.to_builtins(SUBMITTED) | {"type": "job.exploded"}
    with pytest.raises(ContractError, match=r"job\.exploded"):
        message_from_builtins(payload)
    with pytest.raises(ContractError, match="not a valid message"):
        decode_message(b"{not json")
    with pytest.raises(ContractError, match="job_id"):
        message_from_builtins(
            {k: v for k, v in msgspec.to_builtins(SUBMITTED).items() if k != "job_id"}
        )


def test_messages_are_frozen() -> None:
    with pytest.raises(AttributeError):
        SUBMITTED.job_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"num_speakers": 0}, ">= 1"),
        ({"max_speakers": 65}, "<= 64"),
        ({"min_speakers": 3, "max_speakers": 2}, "min_speakers"),
        ({"num_speakers": 5, "max_speakers": 3}, "between"),
        ({"language": "EN"}, "regex"),
    ],
)
def test_job_options_enforce_their_invariants(options: dict[str, object], error: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=error):
        msgspec.convert(options, JobOptions)


def test_result_document_round_trips() -> None:
    doc = ResultDocument(
        id="j1",
        status="completed",
        language="en",
        duration_s=3.5,
        text="hello world",
        segments=[
            Segment(start=0.0, end=1.0, text="hello world", words=[Word(0.0, 0.4, "hello", 0.9)])
        ],
    )
    data = msgspec.json.encode(doc)
    assert msgspec.json.decode(data, type=ResultDocument) == doc
    assert json.loads(data)["analysis"] is None
    assert json.loads(data)["segments"][0]["speaker"] is None


def test_names_are_spelled_once_and_consistent() -> None:
    assert [s.value for s in PIPELINE] == ["split", "transcribe", "diarize", "analyze", "notify"]
    assert STAGE_QUEUES[Stage.SPLIT] == "split"
    assert dead_letter_queue("transcribe") == "transcribe.XQ"
    assert job_event_key(JobStatus.COMPLETED) == "job.completed"
    assert EVENTS_EXCHANGE == "audio.events"
    assert JobStatus.FAILED.terminal
    assert not JobStatus.PROCESSING.terminal


def test_events_round_trip_with_deterministic_ids() -> None:
    first = event_id("job-1", 0, "transcribe")
    assert first == event_id("job-1", 0, "transcribe")
    assert first != event_id("job-1", 1, "transcribe")
    assert first != event_id("job-1", 0, "job")
    event = StageFinished(
        event_id=first,
        job_id="job-1",
        stage="transcribe",
        state="succeeded",
        occurred_at=datetime(2026, 11, 21, tzinfo=UTC),
        metadata={"k": 1},
    )
    data = msgspec.json.encode(event)
    assert json.loads(data)["type"] == "stage.finished"
    assert EVENT_DECODER.decode(data) == event
    finished = JobFinished(event_id="e", job_id="j", status="failed", occurred_at=event.occurred_at)
    assert EVENT_DECODER.decode(msgspec.json.encode(finished)) == finished


def test_a_stage_request_of_version_1_decodes_as_the_whole_stage() -> None:
    old = {"type": "stage.requested", "job_id": SUBMITTED.job_id, "stage": "diarize", "version": 1}
    message = message_from_builtins(old)
    assert isinstance(message, StageRequested)
    assert message.part is None
    block = StageRequested(job_id=SUBMITTED.job_id, stage="diarize", generation=2, part=3)
    assert decode_message(encode_message(block)) == block


def test_diarization_waits_for_split_only_and_analysis_for_both() -> None:
    assert followers(Stage.SPLIT) == (Stage.TRANSCRIBE, Stage.DIARIZE)
    assert followers(Stage.TRANSCRIBE) == (Stage.ANALYZE,)
    assert followers(Stage.DIARIZE) == (Stage.ANALYZE,)
    assert followers(Stage.NOTIFY) == ()
    # Every stage waits only for stages before it: the pipeline order is a valid schedule.
    for stage, required in REQUIRES.items():
        assert all(PIPELINE.index(r) < PIPELINE.index(stage) for r in required)
