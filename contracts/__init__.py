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
    SpeakerHints,
    StageRequested,
    decode_message,
    encode_message,
    message_from_builtins,
)
from contracts.result import (
    Analysis,
    AudioFacts,
    ResultDocument,
    Segment,
    Speaker,
    SpeakerTurn,
    Word,
)
from contracts.states import DeliveryState, JobStatus, Stage, StageState

__all__ = [
    "MESSAGE_DECODER",
    "SCHEMA_VERSION",
    "Analysis",
    "AudioFacts",
    "ChunkReady",
    "ContractError",
    "DeliveryState",
    "JobOptions",
    "JobStatus",
    "JobSubmitted",
    "Message",
    "ResultDocument",
    "Segment",
    "Speaker",
    "SpeakerHints",
    "SpeakerTurn",
    "Stage",
    "StageRequested",
    "StageState",
    "Word",
    "decode_message",
    "encode_message",
    "message_from_builtins",
]
