"""A Python client and CLI for the audio pipeline's ingest API.

Installable alone (`pip install ./client`): it needs httpx, msgspec and the shared
`contracts` package, never the services.

    from audio_client import Client

    with Client() as client:  # AUDIO_PIPELINE_URL, AUDIO_PIPELINE_API_KEY
        job = client.submit("meeting.wav")
        client.wait(job.id)
        print(client.result(job.id).text)
"""

from __future__ import annotations

from audio_client.client import RESULT_FORMATS, Client, JobEvent, RetryPolicy
from audio_client.errors import ApiError, ClientError, JobEnded, Problem, ServiceUnreachable

__all__ = [
    "RESULT_FORMATS",
    "ApiError",
    "Client",
    "ClientError",
    "JobEnded",
    "JobEvent",
    "Problem",
    "RetryPolicy",
    "ServiceUnreachable",
]
