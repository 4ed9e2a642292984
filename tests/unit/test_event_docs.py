from __future__ import annotations

from scripts.event_schema import SCHEMA_PATH, event_schema


def test_the_published_event_schema_matches_the_contracts() -> None:
    assert SCHEMA_PATH.read_text() == event_schema(), "run scripts/event_schema.py"


def test_the_schema_names_both_events_and_their_tags() -> None:
    text = event_schema()
    assert '"job.finished"' in text
    assert '"stage.finished"' in text
    assert '"event_id"' in text
