"""The offline meeting notes: rules for action items and decisions, TextRank summary, keywords.

Three hand-written meetings, each line labelled "A" (an action item), "D" (a decision),
"AD" (both) or None. Distractors that are deliberately *not* action items: negated or
stative first-person sentences ("I will not be here in May", "I'll be honest", "I'm also
out next Monday"), meeting mechanics ("Can you see my screen?", "Let's talk about ..."),
wishes and hedges ("I would love ...", "I might look into ... but no promises"), and
forecasts ("We will probably get more downloads"). Not decisions: questions ("Did we agree
on ...?") and negations ("We haven't decided ...", "we can't decide that today").

The rules were written with MEETING_1 and MEETING_2 at hand; MEETING_3 was written
afterwards and first scored action items 3/5 (precision 3/3) and decisions 1/3 (1/1),
before two general rules ("I can ...", "let's not ...") were added.
"""

from __future__ import annotations

import re

import pytest

from contracts import Analysis, Segment
from processing_service.analyze.notes import analyze
from processing_service.analyze.rules import due_phrase, split_sentences

A, B, C, D = "SPEAKER_00", "SPEAKER_01", "SPEAKER_02", "SPEAKER_03"
Line = tuple[str | None, str, str | None]

MEETING_1: list[Line] = [
    (A, "Okay, let's get started.", None),
    (
        A,
        "Today we review the mobile app launch, the marketing budget and the onboarding flow.",
        None,
    ),
    (B, "Thanks. The mobile app beta went well, and testers liked the new onboarding flow.", None),
    (C, "Crash reports dropped by half, so the mobile app is in good shape for the launch.", None),
    (
        A,
        "Great. After last week's discussion we decided to launch the mobile app on March 3rd.",
        "D",
    ),
    (B, "I will update the release notes by Friday.", "A"),
    (A, "John, can you send the final build to the app store reviewers by next Tuesday?", "A"),
    (C, "Sure, I'll do that.", None),
    (C, "I will not be here in May, I'm on parental leave.", None),
    (A, "Can you see my screen? Let's talk about the marketing budget.", None),
    (B, "The marketing budget is tight, and paid ads cost more than expected.", None),
    (A, "We agreed that the marketing budget stays at forty thousand dollars.", "D"),
    (C, "I think the onboarding flow still needs a shorter signup form.", None),
    (B, "Let me draft a shorter signup form for the onboarding flow tomorrow.", "A"),
    (A, "Maria will run the usability test with five new users by the end of the month.", "A"),
    (C, "For analytics, we compared two vendors, and the open source option is cheaper.", None),
    (A, "Okay, let's go with the open source analytics tool.", "D"),
    (B, "We haven't decided on the pricing page yet, though.", None),
    (B, "Did we agree on the new app icon?", None),
    (A, "Not yet, that can wait until the next meeting.", None),
    (C, "I'll be honest, the app store review usually takes a few days.", None),
    (A, "Someone needs to update the support wiki before the launch.", "A"),
    (B, "I can take that.", None),
    (A, "Priya, please prepare the press kit by March 1st.", "A"),
    (C, "I'm going to fix the login crash on older Android phones this week.", "A"),
    (B, "We will probably get more downloads after the press coverage.", None),
    (B, "I would love to see a dark mode some day.", None),
    (A, "The decision is to keep the web app free for existing customers.", "D"),
    (A, "We decided not to build the tablet layout for now.", "D"),
    (A, "Thanks everyone, I'll send out the notes after the meeting.", "A"),
]

MEETING_2: list[Line] = [
    (A, "Morning all, this is the weekly infrastructure sync.", None),
    (B, "Hi. The database migration to Postgres 16 finished on Sunday without downtime.", None),
    (C, "Nice work. Query latency on the reporting database is still too high, though.", None),
    (A, "Sam, could you profile the slowest reporting queries before Thursday?", "A"),
    (C, "Yep, will do.", None),
    (B, "Also the staging cluster keeps running out of disk space.", None),
    (A, "After some back and forth we settled on moving the logs to object storage.", "D"),
    (B, "I'll write the migration script for the log archive next week.", "A"),
    (C, "We should probably think about retention too.", None),
    (A, "Agreed, but we can't settle the retention policy without legal.", None),
    (A, "Lena needs to check the retention rules with legal by the 15th of June.", "A"),
    (B, "I'm not going to be around on Friday, just so you know.", None),
    (C, "The on-call rotation is a mess at the moment.", None),
    (A, "Going forward we'll use the new paging tool for the on-call rotation.", "D"),
    (C, "I'm gonna set up the paging tool schedules this afternoon.", "A"),
    (B, "Should we also upgrade the load balancers?", None),
    (A, "Not this quarter, the load balancer upgrade is postponed to next year.", "D"),
    (C, "Fine by me. Can somebody remind me where the runbook lives?", None),
    (B, "It's in the wiki. I'll send you the link after this call.", "A"),
    (A, "We need to rotate the database credentials before the audit.", "A"),
    (B, "I've done that before, I can handle it.", None),
    (A, "One more thing: the budget for new servers is approved.", "D"),
    (C, "Great, I'll order the servers once the quote arrives.", "A"),
    (A, "Okay, that's it for today, thanks everyone.", None),
]

MEETING_3: list[Line] = [
    (A, "Alright, welcome to the quarterly planning for the customer portal.", None),
    (B, "Before we start, I wanted to say the support tickets went down twenty percent", None),
    (B, "after we shipped the self-service password reset.", None),
    (C, "That's great news. The next big item is the invoice export feature.", None),
    (A, "Customers keep asking for CSV and PDF invoice exports.", None),
    (D, "Engineering can build the CSV export first, the PDF one is harder.", None),
    (A, "So the plan is CSV first and PDF later, everyone okay with that?", None),
    (B, "Yes, makes sense.", None),
    (A, "Good, then CSV export first is what we'll do.", "D"),
    (D, "I'll have a first version of the CSV export ready for review by the 20th.", "A"),
    (C, "Who's going to write the help center article?", None),
    (B, "That would be me, I can write it once the feature is in staging.", "A"),
    (A, "Tom, would you mind updating the roadmap slide for the board?", "A"),
    (C, "No problem.", None),
    (D, "Another thing, the portal search is slow for large accounts.", None),
    (A, "Let's not touch search this quarter.", "D"),
    (C, "I might look into caching if I find some time, but no promises.", None),
    (B, "We also need a decision on the new pricing tiers.", None),
    (A, "We can't decide that today, finance has to send us the numbers first.", "A"),
    (A, "Ana, please ping finance about the pricing numbers today.", "A"),
    (B, "Will do, I'll ping them after lunch.", None),
    (D, "I'm also out next Monday, I have a dentist appointment.", None),
    (
        A,
        "Okay. To recap, we agreed on CSV first, search is frozen, and pricing waits for finance.",
        "D",
    ),
    (A, "Thanks everyone.", None),
]

MEETINGS = {"meeting_1": MEETING_1, "meeting_2": MEETING_2, "meeting_3": MEETING_3}


def segments_of(lines: list[Line]) -> list[Segment]:
    return [
        Segment(i * 5.0, i * 5.0 + 4.5, text, speaker) for i, (speaker, text, _) in enumerate(lines)
    ]


def scores(expected: set[int], found: list[int | None]) -> tuple[int, int, int]:
    """(true positives, expected, found), by segment index."""
    found_set = {i for i in found if i is not None}
    return len(expected & found_set), len(expected), len(found_set)


def measure(kind: str) -> dict[str, tuple[int, int, int]]:
    result = {}
    for name, lines in MEETINGS.items():
        analysis, _ = analyze(segments_of(lines))
        expected = {i for i, line in enumerate(lines) if line[2] and kind in line[2]}
        items = analysis.action_items if kind == "A" else analysis.decisions
        result[name] = scores(expected, [item.segment_index for item in items])
    return result


@pytest.mark.parametrize("kind", ["A", "D"])
def test_recall_and_precision_of_action_items_and_decisions(kind: str) -> None:
    measured = measure(kind)
    hits, expected, found = (sum(m[k] for m in measured.values()) for k in range(3))
    # Measured: action items 19/20 found, 19/19 right; decisions 12/12 found, 12/12 right
    # (the miss: "finance has to send us the numbers", a team named in lower case).
    assert hits / expected >= 0.9, measured
    assert hits / found >= 0.9, measured
    for name, (tp, n_expected, n_found) in measured.items():
        assert tp / n_expected >= 0.75, (name, measured)
        assert tp / max(1, n_found) >= 0.75, (name, measured)


def test_owners_and_due_dates() -> None:
    analysis, warnings = analyze(segments_of(MEETING_1))
    assert warnings == []
    items = {item.segment_index: (item.owner, item.due) for item in analysis.action_items}
    assert items[5] == (B, "by Friday")  # "I will ..." -> the speaker
    assert items[6] == ("John", "by next Tuesday")  # "John, can you ..."
    assert items[13] == (B, "tomorrow")  # "Let me ..."
    assert items[14] == ("Maria", "by the end of the month")  # "Maria will ..."
    assert items[21] == (B, "before the launch")  # "Someone needs to ..." / "I can take that."
    assert items[23] == ("Priya", "by March 1st")  # "Priya, please ..."
    assert items[24] == (C, "this week")
    assert 7 not in items  # acceptances are not listed again
    assert 22 not in items

    analysis, _ = analyze(segments_of(MEETING_2))
    items = {item.segment_index: (item.owner, item.due) for item in analysis.action_items}
    assert items[3] == ("Sam", "before Thursday")
    assert items[10] == ("Lena", "by the 15th of June")
    assert items[19] == (B, "before the audit")  # taken on with "I can handle it"


def test_owner_is_unknown_without_speakers() -> None:
    segments = [Segment(0, 1, "I will update the release notes by Friday.")]
    [item] = analyze(segments)[0].action_items
    assert (item.owner, item.due, item.segment_index) == (None, "by Friday", 0)


@pytest.mark.parametrize(
    ("text", "due"),
    [
        ("I'll send it by the end of the month.", "by the end of the month"),
        ("Can you finish it next Tuesday?", "next Tuesday"),
        ("Please review it by 2025-03-14.", "by 2025-03-14"),
        ("I'll have it on June 3rd, 2025.", "on June 3rd, 2025"),
        ("I'll do it within two weeks.", "within two weeks"),
        ("Send it by 5 pm please.", "by 5 pm"),
        ("I'll look at it as soon as possible.", "as soon as possible"),
        ("I'll look at it sometime.", None),
        ("I may be late.", None),
    ],
)
def test_due_phrases(text: str, due: str | None) -> None:
    assert due_phrase(text) == due


def test_summary_is_a_few_central_transcript_sentences_in_order() -> None:
    for lines in MEETINGS.values():
        segments = segments_of(lines)
        summary = analyze(segments)[0].summary
        assert 0 < len(summary) <= 600
        sentences = [s.text for s in split_sentences(segments)]
        chosen = [s for s in sentences if s in summary]
        assert 1 <= len(chosen) <= 3
        assert " ".join(chosen) == summary
    summary = analyze(segments_of(MEETING_1))[0].summary
    assert "mobile app" in summary


def test_a_long_sentence_is_cut_for_the_summary() -> None:
    text = " ".join(f"word{i} topic{i % 7}" for i in range(200)) + "."
    summary = analyze([Segment(0, 60, text, A)])[0].summary
    assert len(summary) <= 600
    assert summary.endswith("…")


def test_keywords_name_the_topics() -> None:
    expected = {
        "meeting_1": {"mobile app", "onboarding flow", "marketing budget", "launch"},
        "meeting_2": {"database", "retention", "paging tool", "load balancers"},
        "meeting_3": {"csv export", "invoice export", "search", "pricing"},
    }
    for name, lines in MEETINGS.items():
        keywords = analyze(segments_of(lines))[0].keywords
        assert 5 <= len(keywords) <= 10
        assert keywords == [k.lower() for k in keywords]
        assert len(set(keywords)) == len(keywords)
        assert expected[name] <= set(keywords), (name, keywords)


def test_sentences_split_by_whisper_are_joined_and_unpunctuated_speech_is_cut() -> None:
    segments = [
        Segment(0, 2, "So I will send the", A),
        Segment(2, 4, "contract to legal by Monday. Thanks.", A),
        Segment(4, 6, "ok", B),
    ]
    assert [(s.text, s.segment_index) for s in split_sentences(segments)] == [
        ("So I will send the contract to legal by Monday.", 0),
        ("Thanks.", 1),
        ("ok", 2),
    ]
    rambling = [
        Segment(i, i + 1, "and then we talked about the thing for a while", A) for i in range(12)
    ]
    assert len(split_sentences(rambling)) >= 2


@pytest.mark.parametrize(
    "text",
    [
        "I will not be here in May.",
        "I won't be able to make the demo.",
        "I'll be honest, it's late.",
        "I'll be out next week.",
        "Let me think about it.",
        "Can you hear me?",
        "I would love a dark mode.",
        "We will probably get more downloads.",
        "Let me know if you have questions.",
    ],
)
def test_distractors_are_not_action_items(text: str) -> None:
    assert analyze([Segment(0, 1, text, A)])[0].action_items == []


@pytest.mark.parametrize(
    "text",
    [
        "We haven't decided on the pricing yet.",
        "Did we agree on the icon?",
        "We still need to decide on the vendor.",
        "If we decide to go with it, tell me.",
    ],
)
def test_non_decisions(text: str) -> None:
    assert analyze([Segment(0, 1, text, A)])[0].decisions == []


def test_empty_transcript() -> None:
    assert analyze([]) == (Analysis(summary=""), [])
    assert analyze([Segment(0, 1, "  ", A)]) == (Analysis(summary=""), [])
    assert analyze([Segment(0, 1, "Hm.", A)])[0].action_items == []


def test_deterministic() -> None:
    segments = segments_of(MEETING_1)
    first = analyze(segments)
    assert all(analyze(list(segments)) == first for _ in range(3))
    assert not re.search(r"SPEAKER_\d+", first[0].summary)


@pytest.mark.parametrize(
    ("text", "owner"),
    [
        ("José, can you send the deck by Friday?", "José"),
        ("Maria'll take the notes.", "Maria"),
        ("Jean-Luc needs to book the room.", "Jean-Luc"),
        ("It will be done soon, and Maria will send it.", "Maria"),
        ("Could Ravi review the contract?", "Ravi"),
        ("Can you send it over, Kim?", "Kim"),
        ("Awesome, can you send it?", None),
    ],
)
def test_named_owners(text: str, owner: str | None) -> None:
    [item] = analyze([Segment(0, 1, text, A)])[0].action_items
    assert item.owner == owner
