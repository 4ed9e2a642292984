"""Data shared by the ingest and processing services: messages, results, names, schema.

Pure data only: msgspec Structs, the names of queues and exchanges, and the SQL schema.
Nothing here opens a connection or reads configuration.
"""

from __future__ import annotations

from contracts.messages import (
    MESSAGE_DECODER,
    SCHEMA_VERSION,
    ChunkReady,
    ContractError,
    JobOptions,
    JobSubmitted,
    Message,
    StageRequested,
    decode_message,
    encode_message,
    message_from_builtins,
)
from contracts.result import Analysis, ResultDocument, Segment, Speaker, SpeakerTurn, Word
from contracts.states import JobStatus, Stage, StageState

__all__ = [
    "MESSAGE_DECODER",
    "SCHEMA_VERSION",
    "Analysis",
    "ChunkReady",
    "ContractError",
    "JobOptions",
    "JobStatus",
    "JobSubmitted",
    "Message",
    "ResultDocument",
    "Segment",
    "Speaker",
    "SpeakerTurn",
    "Stage",
    "StageRequested",
    "StageState",
    "Word",
    "decode_message",
    "encode_message",
    "message_from_builtins",
]
