"""Messages that cross a process boundary, as tagged, versioned, frozen msgspec Structs.

Schema evolution follows msgspec's rules: a new field always has a default, a field never
changes its type, and decoders ignore fields they do not know. `version` says which
revision of a message's schema its producer wrote; consumers branch on it only when a
revision changes meaning, never to parse.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import msgspec

#: Revision of the message schemas in this module; bump when a message gains a field.
SCHEMA_VERSION = 2

#: Speaker counts above this are refused: no real meeting needs more, and the diarization
#: clustering cost grows with it.
MAX_SPEAKERS = 64

SpeakerCount = Annotated[int, msgspec.Meta(ge=1, le=MAX_SPEAKERS)]
LanguageCode = Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}$")]
#: Longest `delete_after` accepted: ten years.
MAX_RETENTION_S = 10 * 365 * 86400
RetentionSeconds = Annotated[float, msgspec.Meta(gt=0, le=MAX_RETENTION_S)]


class ContractError(ValueError):
    """A payload does not match any message contract; the text says why."""


class SpeakerHints(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the client says about the number of speakers; an omitted hint means none.

    The body of `POST /v1/jobs/{id}/diarize`, the speaker part of `JobOptions`, and what
    the diarize stage is given.
    """

    num_speakers: SpeakerCount | None = None
    min_speakers: SpeakerCount | None = None
    max_speakers: SpeakerCount | None = None

    def __post_init__(self) -> None:
        if (
            self.min_speakers is not None
            and self.max_speakers is not None
            and self.min_speakers > self.max_speakers
        ):
            raise ValueError("min_speakers must not be greater than max_speakers")
        if self.num_speakers is not None and (
            (self.min_speakers is not None and self.num_speakers < self.min_speakers)
            or (self.max_speakers is not None and self.num_speakers > self.max_speakers)
        ):
            raise ValueError("num_speakers must lie between min_speakers and max_speakers")


#: Bounds of the vocabulary and prompt a job gives the transcriber.
MAX_VOCABULARY_TERMS = 100
MAX_TERM_CHARS = 64
MAX_PROMPT_CHARS = 1000
VocabularyTerm = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TERM_CHARS)]
Vocabulary = Annotated[list[VocabularyTerm], msgspec.Meta(max_length=MAX_VOCABULARY_TERMS)]
Prompt = Annotated[str, msgspec.Meta(max_length=MAX_PROMPT_CHARS)]
#: C0 and C1 controls and DEL: no place in a vocabulary term.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class JobOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """What the client asked for with the upload."""

    language: LanguageCode | None = None
    num_speakers: SpeakerCount | None = None
    min_speakers: SpeakerCount | None = None
    max_speakers: SpeakerCount | None = None
    webhook_url: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Seconds after the job ends at which its rows and files are deleted; None: the
    #: service's RETENTION_DAYS.
    delete_after: RetentionSeconds | None = None
    #: Names and terms the transcriber should expect (spelled as they should come out).
    vocabulary: Vocabulary = msgspec.field(default_factory=list)
    #: Text that leads into the recording (its context, style or spellings) for whisper.
    prompt: Prompt | None = None

    def __post_init__(self) -> None:
        self.speaker_hints  # noqa: B018 - validates the hints together
        # Meta bounds hold for decoded options; these hold for constructed ones too.
        if len(self.vocabulary) > MAX_VOCABULARY_TERMS:
            raise ValueError(f"vocabulary must have at most {MAX_VOCABULARY_TERMS} terms")
        for term in self.vocabulary:
            if not 1 <= len(term) <= MAX_TERM_CHARS or _CONTROL.search(term):
                raise ValueError(
                    f"each vocabulary term must be 1 to {MAX_TERM_CHARS} characters"
                    " without control characters"
                )
        if self.prompt is not None and len(self.prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt must be at most {MAX_PROMPT_CHARS} characters")

    @property
    def speaker_hints(self) -> SpeakerHints:
        return SpeakerHints(self.num_speakers, self.min_speakers, self.max_speakers)

    def with_speaker_hints(self, hints: SpeakerHints) -> JobOptions:
        """These options with their speaker hints replaced by `hints`."""
        return msgspec.structs.replace(
            self,
            num_speakers=hints.num_speakers,
            min_speakers=hints.min_speakers,
            max_speakers=hints.max_speakers,
        )


class JobSubmitted(msgspec.Struct, frozen=True, tag="job.submitted", tag_field="type"):
    """Ingest → `split`: an upload is stored and its job recorded; process it."""

    job_id: str
    storage_path: str
    original_filename: str
    size_bytes: int
    sha256: str
    content_type: str
    submitted_at: datetime
    options: JobOptions = JobOptions()
    #: Where `split` fetches the audio (to `storage_path`) when the client gave a URL
    #: instead of a file; `size_bytes` and `sha256` are then 0 and "" until it has.
    audio_url: str | None = None
    version: int = SCHEMA_VERSION


class ChunkReady(msgspec.Struct, frozen=True, tag="chunk.ready", tag_field="type"):
    """`split` → `transcribe`: one chunk of the normalized audio is ready to transcribe."""

    job_id: str
    chunk_index: int
    chunk_count: int
    audio_path: str
    start_s: float
    end_s: float
    #: The job generation this chunk belongs to; workers drop older ones. None: unknown
    #: (a message from before generations were carried), processed as current.
    generation: int | None = None
    version: int = SCHEMA_VERSION


class StageRequested(msgspec.Struct, frozen=True, tag="stage.requested", tag_field="type"):
    """Worker → worker: run `stage` for the job (everything else is loaded by id)."""

    job_id: str
    stage: str
    #: The job generation that asks; workers drop a request of an older generation (a
    #: delayed retry from before a re-diarization). None: unknown, processed as current.
    generation: int | None = None
    #: Which part of the stage: a diarize block's index (version 2). None: the whole
    #: stage, which then plans its parts and sends one message per part.
    part: int | None = None
    version: int = SCHEMA_VERSION


#: Every message type a queue consumer may receive; the union grows with the pipeline.
Message = JobSubmitted | ChunkReady | StageRequested

MESSAGE_DECODER: msgspec.json.Decoder[Message] = msgspec.json.Decoder(Message)
_ENCODER = msgspec.json.Encoder()


def encode_message(message: Message) -> bytes:
    """JSON bytes of a message, type tag included."""
    return _ENCODER.encode(message)


def decode_message(data: bytes | str) -> Message:
    """Decode JSON into a message, or raise `ContractError` saying what is wrong."""
    try:
        return MESSAGE_DECODER.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ContractError(f"not a valid message: {exc}") from exc


def message_from_builtins(data: object) -> Message:
    """Convert already-parsed JSON (a Dramatiq actor argument) into a message."""
    try:
        message: Message = msgspec.convert(data, Message)
    except msgspec.ValidationError as exc:
        raise ContractError(f"not a valid message: {exc}") from exc
    return message
