"""The workers' errors. Whether to retry is a property of the error, not of the actor.

    ProcessingError
    ├── PermanentError        fail at once, no retries (bad input, invalid message)
    │   ├── UndecodableAudio
    │   └── InvalidMessage
    └── TransientError        retry with backoff, then dead-letter (storage, timeouts)
        └── UploadMissing

Any other exception (a database or broker outage, a time limit) counts as transient.
"""

from __future__ import annotations


class ProcessingError(Exception):
    """Base of the processing service's errors; the text is shown on the job."""


class PermanentError(ProcessingError):
    """Retrying cannot help: the job fails at once with this message."""


class UndecodableAudio(PermanentError):
    """ffmpeg cannot read the upload as audio, or it holds no samples."""


class InvalidMessage(PermanentError):
    """A queue message does not match any contract."""


class TransientError(ProcessingError):
    """Worth retrying: the cause may go away (storage hiccup, timeout)."""


class UploadMissing(TransientError):
    """The upload is not (yet) visible in shared storage."""
