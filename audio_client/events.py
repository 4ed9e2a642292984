"""Reading a `text/event-stream` (the WHATWG server-sent events format) line by line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event: its name (`message` when the server gave none) and data."""

    event: str
    data: str
    id: str | None = None


def parse_events(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """The events of a stream given as lines without their line endings.

    Comment lines (`:` first) are skipped; an event is dispatched at a blank line, and one
    without any `data` line is dropped, as the format says."""
    name, data, event_id = "", list[str](), None
    for line in lines:
        if not line:
            if data:
                yield ServerSentEvent(name or "message", "\n".join(data), event_id)
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id" and "\0" not in value:
            event_id = value
