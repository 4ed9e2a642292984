"""The workers' errors. Whether to retry is a property of the error, not of the actor.

    ProcessingError
    ├── PermanentError        fail at once, no retries (bad input, invalid message)
    │   ├── UndecodableAudio
    │   ├── InvalidMessage
    │   ├── StartedTooOften   the message killed its worker again and again
    │   ├── SourceNotAllowed  an audio URL (or a redirect) the fetcher may not follow
    │   ├── SourceRefused     the audio URL's server answered 4xx (but 408, 429)
    │   ├── SourceTooLarge    the audio at the URL is larger than FETCH_MAX_BYTES
    │   └── TooManyRedirects
    └── TransientError        retry with backoff, then dead-letter (storage, timeouts)
        ├── UploadMissing
        ├── SourceUnavailable the audio URL timed out, failed to connect, or said 5xx/408/429
        └── WebhookRetry      retry after the receiver's Retry-After when it gave one

Any other exception (a database or broker outage, a time limit) counts as transient.

    JobCancelled              not an error: the client cancelled or deleted the job; the
                              stage stops, its message is acknowledged
"""

from __future__ import annotations

import dramatiq


class ProcessingError(Exception):
    """Base of the processing service's errors; the text is shown on the job."""


class PermanentError(ProcessingError):
    """Retrying cannot help: the job fails at once with this message."""


class UndecodableAudio(PermanentError):
    """ffmpeg cannot read the upload as audio, or it holds no samples."""


class InvalidMessage(PermanentError):
    """A queue message does not match any contract."""


class StartedTooOften(PermanentError):
    """A stage began more often than its retries allow: its worker keeps dying on it."""

    def __init__(self, stage: str, attempts: int) -> None:
        super().__init__(
            f"{stage} was started {attempts} times without finishing; the worker may have"
            " died on it each time (out of memory?)"
        )


class SourceNotAllowed(PermanentError):
    """The audio URL, or a redirect, is not http(s) or points to a refused address."""


class SourceRefused(PermanentError):
    """The server of an audio URL answered with a status that retrying cannot change."""


class SourceTooLarge(PermanentError):
    """The audio behind a URL is larger than the fetcher accepts."""


class TooManyRedirects(PermanentError):
    """An audio URL redirected more often than the fetcher follows."""


class JobCancelled(ProcessingError):
    """The job was cancelled or deleted while a stage worked on it: stop, drop its work.

    Not a failure: the actor catches it, settles the stage and acknowledges the message.
    """


class StageSettled(ProcessingError):
    """The stage was settled while this message waited (the job failed, or the stage
    gave up or was skipped): there is nothing left for it to do, and its work files may
    still serve the job's other stages. Not a failure: the message is acknowledged."""


class TransientError(ProcessingError):
    """Worth retrying: the cause may go away (storage hiccup, timeout)."""


class StorageFull(TransientError):
    """The storage volume has no room left for a stage's output; retried, then dead."""


class UploadMissing(TransientError):
    """The upload is not (yet) visible in shared storage."""


class SourceUnavailable(TransientError):
    """An audio URL could not be fetched this time: no answer, a timeout, 5xx, 408, 429."""


class WebhookRetry(TransientError, dramatiq.Retry):
    """The webhook receiver failed in a way worth retrying (5xx, 408, 429, no answer).

    Dramatiq's Retries middleware honours `delay` (milliseconds) when it is set.
    """

    def __init__(self, message: str, delay_ms: int | None = None) -> None:
        dramatiq.Retry.__init__(self, message, delay=delay_ms)
