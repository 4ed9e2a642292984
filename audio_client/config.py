"""Where the client finds the API and its key: arguments first, then the environment.

This module is the one place the client reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: The API's base URL.
URL_VARIABLE = "AUDIO_PIPELINE_URL"
#: The API key, sent as `Authorization: Bearer <key>` (absent: an open API).
API_KEY_VARIABLE = "AUDIO_PIPELINE_API_KEY"
#: The webhook signing secret `verify-webhook` uses when `--secret` is not given.
WEBHOOK_SECRET_VARIABLE = "AUDIO_PIPELINE_WEBHOOK_SECRET"  # noqa: S105 - a variable name
#: Where `make run` serves the API.
DEFAULT_URL = "http://127.0.0.1:8000"


def from_env(name: str, given: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """`given` when set, else the environment variable `name` (empty counts as unset)."""
    if given:
        return given
    return (os.environ if env is None else env).get(name) or None
