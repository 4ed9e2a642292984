"""Client text made safe at the door, before it reaches logs, JSON or Postgres.

Postgres refuses NUL in text and jsonb, UTF-8 cannot carry lone surrogates, and control
characters in a file name end up in logs and in the `Content-Disposition` a client reads
back. Descriptive text (the file name, the declared content type) is cleaned: controls,
unpaired surrogates and bidirectional overrides are removed and the length is capped.
Option values are checked instead, and a bad one is refused with a 422 naming its field,
since silently changing a URL or a secret would change what the client asked for.
"""

from __future__ import annotations

import re
from typing import Any

from ingest_service.problems import InvalidOptions

#: C0 and C1 controls, DEL, unpaired surrogates, and the bidirectional embedding,
#: override and isolate characters that can make a name read differently than it is.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
#: What JSON strings may legitimately hold of those: tab, newline, carriage return.
_UNSAFE_IN_JSON = re.compile("[\x00\ud800-\udfff]")

#: Longest file name and content type kept (longer ones are cut).
MAX_NAME_CHARS = 255
#: Longest option value accepted (a webhook URL, a language code, a secret).
MAX_OPTION_CHARS = 2048


def clean_name(value: str, default: str, limit: int = MAX_NAME_CHARS) -> str:
    """`value` without unsafe characters and surrounding blanks, cut to `limit`."""
    cleaned = _UNSAFE.sub("", value).strip()[:limit].strip()
    return cleaned or default


def check_option(field: str, value: str, limit: int = MAX_OPTION_CHARS) -> str:
    """`value` if it is storable text of at most `limit` characters; else a 422."""
    if len(value) > limit:
        raise InvalidOptions(f"{field} is longer than {limit} characters", field=field)
    if _UNSAFE.search(value):
        raise InvalidOptions(
            f"{field} contains a control character or an unpaired surrogate", field=field
        )
    return value


def check_json_text(field: str, value: Any) -> None:
    """Refuse (422) a decoded JSON value holding a string that Postgres cannot store."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSAFE_IN_JSON.search(item):
                raise InvalidOptions(
                    f"{field} contains a NUL character or an unpaired surrogate, which"
                    " cannot be stored",
                    field=field,
                )
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
