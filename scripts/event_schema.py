"""Write docs/events.schema.json: the JSON Schema of the events, generated from contracts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import msgspec

from contracts.events import Event

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "events.schema.json"


def event_schema() -> str:
    """The schema as the text committed in docs/."""
    return json.dumps(msgspec.json.schema(Event), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(event_schema())
    print(f"wrote {SCHEMA_PATH}", file=sys.stderr)
