"""How a job's prompt and vocabulary become whisper's initial prompt."""

from __future__ import annotations

from processing_service.transcribe.whisper import initial_prompt


def test_the_prompt_comes_first_and_the_glossary_last() -> None:
    assert initial_prompt(None, []) is None
    assert initial_prompt("  ", ()) is None
    assert initial_prompt("A product call", []) == "A product call."
    assert initial_prompt("Is it on?", []) == "Is it on?"
    assert initial_prompt(None, ["Quorvexa"]) == "Glossary: Quorvexa."
    assert (
        initial_prompt(" Weekly sync. ", ["Quorvexa", "Zyntrelle"])
        == "Weekly sync. Glossary: Quorvexa, Zyntrelle."
    )
