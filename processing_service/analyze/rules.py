"""Rules that find action items, decisions and deadlines in a transcript's sentences.

Pure functions over `Sentence`s (see `split_sentences`). The rules are deliberately
conservative, since a wrong action item costs more than a missed one:

* a commitment is first person ("I will", "I'll", "I'm going to", "let me", "I can"),
  a named person ("Maria will ...", "Maria is going to ..."), a request ("can you ...",
  "please ...", "John, ...") or a team task ("we need to ...", "someone needs to ...");
* negated or stative sentences are not commitments: "I will not be here in May",
  "I won't", "I'll be honest", "I'll be out", "let me think", "can you hear me?";
* an accepted request ("can you ...?" answered "Sure, I'll do that") takes the accepting
  speaker as owner, and the acceptance is not listed again;
* a decision is "we decided / agreed / settled on", "let's go with", "we'll go with",
  "let's not ...", "going forward we'll ...", "the decision is", "it's decided",
  "... is approved / postponed"; questions and negations ("we haven't decided") are not
  decisions, but "we decided not to ..." is one.

The rules read English; owners are speaker labels (first person, or whoever accepts a
request) or names (capitalised words never written in lower case in the transcript).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from contracts import Segment
from contracts.result import ActionItem, Decision

#: Words of a sentence with no terminal punctuation before it ends at a segment boundary.
MAX_UNPUNCTUATED_WORDS = 40

_STOPWORD_TEXT = """
    a about above after again against ago all almost also although always am among an and
    another any anybody anyone anything anyway anywhere are around as ask asked at away back
    basically be became because become been before being below best better between both but
    by call called came can cannot come coming could did do does doing done down during each
    either else enough etc even ever every everybody everyone everything exactly far few
    first for from front fine further get gets getting give given go goes going gone gonna
    good got great guess guys had half happen has have having he hear hello her here hers
    herself hey hi him himself his how however i if in indeed instead into is it its itself
    just keep kind know known last later least less let lets like likely little look looked
    looking lot lots made make makes making many may maybe me mean means might mine more most
    mostly much must my myself need needs never new next nice no nobody none nor not nothing
    now of off often oh ok okay on once one ones only onto or other others otherwise our ours
    ourselves out over own perfect perhaps please point pretty probably put quite rather
    really right said same say saying says see seem seems seen she should since so some
    somebody someone something sometimes somewhat soon sorry sort still stuff such sure take
    taken talk tell than thank thanks that the their theirs them themselves then there
    therefore these they thing things think this those though through thus to today together
    tomorrow too took toward towards try trying uh um under until up upon us use used using
    very want wanted wants was way we week well went were what whatever when where whether
    which while who whole whom whose why will with within without wonder would yeah year yes
    yet you your yours yourself yourselves monday tuesday wednesday thursday friday saturday
    sunday january february march april june july august september october november december
    two three four five six seven eight nine ten hundred thousand million day days weeks
    month months end start started everything sounds decide decided decision agree agreed
    write send ping check handle order wait waits asking awesome excellent wonderful
    fantastic true exactly correct wait listen besides meanwhile hmm ah wow cheers morning
    afternoon evening folks people team"""
#: Function words, fillers and date words: never keywords, never names.
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "approx"}
_BOUNDARY = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")
_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)*")


@dataclass(frozen=True)
class Sentence:
    text: str
    segment_index: int
    speaker: str | None


def _pieces(text: str) -> list[tuple[str, bool]]:
    """`text` cut at sentence ends: (piece, whether it ends a sentence)."""
    pieces: list[tuple[str, bool]] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        before = text[start : match.start()].rsplit(maxsplit=1)
        last = before[-1].rstrip(".").lower() if before else ""
        if last in _ABBREVIATIONS or re.fullmatch(r"[a-z]", last):
            continue
        pieces.append((text[start : match.start()].strip(), True))
        start = match.end()
    rest = text[start:].strip()
    if rest:
        pieces.append((rest, rest[-1] in ".!?…"))
    return pieces


def split_sentences(segments: Sequence[Segment]) -> list[Sentence]:
    """Sentences of the transcript, each with the segment it starts in and its speaker.

    Consecutive segments of one speaker are read as one stream, so that a sentence
    whisper split over two segments stays whole; a stream without punctuation is cut
    at a segment boundary once the sentence has `MAX_UNPUNCTUATED_WORDS` words.
    """
    sentences: list[Sentence] = []
    buffer: list[str] = []
    owner: tuple[int, str | None] | None = None

    def flush() -> None:
        nonlocal owner
        if buffer and owner is not None:
            sentences.append(Sentence(" ".join(buffer), owner[0], owner[1]))
        buffer.clear()
        owner = None

    for index, segment in enumerate(segments):
        if owner is not None and segment.speaker != owner[1]:
            flush()
        for piece, ends in _pieces(segment.text.replace("\u2019", "'").strip()):
            if owner is None:
                owner = (index, segment.speaker)
            buffer.append(piece)
            if ends:
                flush()
        if sum(len(part.split()) for part in buffer) >= MAX_UNPUNCTUATED_WORDS:
            flush()
    flush()
    return sentences


# -- deadlines ----------------------------------------------------------------------------

_WEEKDAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november"
    r"|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)"
)
_NUMBER = r"(?:a|an|one|two|three|four|five|six|seven|eight|nine|ten|a\s+couple\s+of|a\s+few|\d+)"
_ORDINAL = r"\d{1,2}(?:st|nd|rd|th)?"
_PREP = r"(?:(?:by|before|until|till|no\s+later\s+than|on|due)\s+)"
_DUE = re.compile(
    rf"""\b(?:
      {_PREP}?(?:the\s+)?end\s+of\s+(?:the\s+)?(?:(?:this|next)\s+)?
          (?:day|week|month|quarter|year|sprint|{_MONTH})
    | {_PREP}?(?:eod|eow|cob|close\s+of\s+business)
    | {_PREP}?(?:(?:this|next|the\s+coming|coming)\s+)?{_WEEKDAY}
          (?:\s+(?:morning|afternoon|evening|night))?(?:,?\s+(?:the\s+)?{_ORDINAL}\b)?
    | {_PREP}?(?:the\s+)?{_ORDINAL}\s+(?:of\s+)?{_MONTH}(?:,?\s+\d{{4}})?
    | {_PREP}?{_MONTH}\s+{_ORDINAL}\b(?:,?\s+\d{{4}})?
    | {_PREP}?\d{{4}}-\d{{2}}-\d{{2}}
    | {_PREP}?\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?
    | {_PREP}?(?:first\s+thing\s+)?(?:later\s+)?(?:tomorrow|tonight|today)
          (?:\s+(?:morning|afternoon|evening|night))?
    | {_PREP}?(?:next|this|the\s+following)\s+(?:week|month|quarter|sprint|year)
    | (?:within|in)\s+(?:the\s+next\s+)?{_NUMBER}\s+(?:business\s+)?(?:hours?|days?|weeks?|months?)
    | (?:by|before|until)\s+(?:noon|midday|midnight
          |\d{{1,2}}(?::\d{{2}})?\s*(?:am|pm|a\.m\.|p\.m\.|o'clock))
    | (?:by|before|until)\s+(?:early\s+|mid-?|late\s+)?{_MONTH}
    | {_PREP}?this\s+(?:morning|afternoon|evening)
    | (?:by|before|until|on)\s+the\s+\d{{1,2}}(?:st|nd|rd|th)\b
    | (?:before|by|after)\s+(?:the|our|this)\s+(?:next\s+)?(?:meeting|call|launch|release|demo
          |review|deadline|standup|stand-up|sync|offsite|board\s+meeting|workshop|audit)
    | asap | as\s+soon\s+as\s+possible | right\s+away
    )\b""",
    re.IGNORECASE | re.VERBOSE,
)


def due_phrase(text: str) -> str | None:
    """The first deadline stated in `text` as said ("by Friday", "tomorrow"), if any."""
    match = _DUE.search(text)
    return " ".join(match.group(0).split()).rstrip(".") if match else None


# -- names --------------------------------------------------------------------------------

_NAME = r"[^\W\d_]+(?:-[^\W\d_]+)?"
#: Capitalised words that address or name no one.
_NOT_NAMES = {"i", "design", "marketing", "sales", "engineering", "legal", "finance", "support"}
_DATE_WORDS = re.compile(rf"^(?:{_WEEKDAY}|{_MONTH})$", re.IGNORECASE)


def _is_name(word: str, lower_words: set[str]) -> bool:
    """A capitalised word that is no function word or date and is never written lower-case."""
    return (
        word[:1].isupper()
        and word.lower() not in _NOT_NAMES
        and word.lower() not in STOPWORDS
        and word.lower() not in lower_words
        and not _DATE_WORDS.match(word)
    )


# -- commitments --------------------------------------------------------------------------

_ADVERBS = r"(?:(?:just|also|quickly|definitely|personally|probably|then|still|happily)\s+)*"
_FIRST_PERSON = re.compile(
    r"\b(?:I\s+will|I'll|I\s+shall|I\s+am\s+going\s+to|I'm\s+going\s+to|I'm\s+gonna"
    r"|I\s+need\s+to|I\s+have\s+to|I've\s+got\s+to|I\s+promise\s+to|I\s+can"
    r"|I\s+volunteer\s+to|let\s+me)\s+" + _ADVERBS + r"(?P<rest>.*)",
    re.IGNORECASE,
)
_NAMED = re.compile(
    rf"\b(?P<name>{_NAME})(?:'ll|'s\s+going\s+to|\s+(?:will|is\s+going\s+to|is\s+gonna"
    r"|needs\s+to|has\s+to|can\s+take|is\s+taking|is\s+handling))\s+" + _ADVERBS
)
_REQUEST = re.compile(
    r"\b(?:(?:can|could|would|will)\s+you(?:\s+please)?|please|I\s+need\s+you\s+to"
    r"|I'd\s+like\s+you\s+to|you\s+need\s+to|you\s+have\s+to|make\s+sure\s+(?:to|you))\s+"
    + _ADVERBS
    + r"(?P<rest>.*)",
    re.IGNORECASE,
)
_ASK_NAMED = re.compile(
    rf"\b(?:(?i:can|could|would|will)\s+(?P<name>{_NAME})"
    rf"|I\s+(?i:need)\s+(?P<name2>{_NAME})\s+to)\s+"
)
_TEAM = re.compile(
    r"\b(?:we\s+(?:still\s+)?(?:need|have)\s+to|we\s+must|we've\s+got\s+to|we'll\s+need\s+to"
    r"|some(?:one|body)\s+(?:else\s+)?(?:needs|has|should)(?:\s+to)?)\s+"
    + _ADVERBS
    + r"(?P<rest>.*)",
    re.IGNORECASE,
)
_EXPLICIT = re.compile(r"\b(?:action\s+items?|to-?dos?|follow[- ]up)\s*(?:for\s+\w+\s*)?:", re.I)
#: What may not follow a commitment trigger: negations, states and figures of speech.
_NOT_A_TASK = re.compile(
    r"^(?:not|never|be\s+(?!\w+ing\b)|say|admit|guess|bet|see|think|know|ask|explain|wonder"
    r"|tell\s+you|leave\b|drop\s+off|hop\s+off|head\s+out|(?:go|run)\s*(?:now\s*)?(?:[.!,]|$)"
    r"|hear|believe|imagine|repeat|remember|like|love|mute|unmute"
    r"|share\s+(?:my|your|the)\s+screen|talk|discuss|start|hope|agree|disagree|check\s+if\s+you)",
    re.IGNORECASE,
)
_NEGATED_FIRST_PERSON = re.compile(
    r"\bI\s+(?:won't|will\s+not|can't|cannot|shan't|am\s+not|'m\s+not)\b", re.I
)
_ACCEPTANCE = re.compile(
    r"^(?:sure|yes|yeah|yep|ok(?:ay)?|absolutely|of\s+course|no\s+problem|will\s+do|can\s+do"
    r"|definitely|certainly|on\s+it|sounds\s+good|I\s+can|I\s+will|I'll|I'm\s+on\s+it)\b"
    r"|\bI(?:'ll|\s+will|\s+can)\s+(?:handle|take|do|own|cover|grab|pick\s+up)"
    r"\s+(?:it|that|this)\b",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(?:can't|cannot|can\s+not|won't|will\s+not|not\s+able|unable|no\s+time|not\s+me)\b", re.I
)
_VOCATIVE_START = re.compile(
    rf"^(?:(?:ok(?:ay)?|so|and|also|then|alright|right|now)\s*,?\s+)?(?P<name>{_NAME})\s*,"
)
_VOCATIVE_END = re.compile(rf",\s*(?P<name>{_NAME})\s*[?.!]*$")


def _is_task(rest: str | None) -> bool:
    return bool(rest and rest.strip()) and not _NOT_A_TASK.match(rest or "")


def _task_after(pattern: re.Pattern[str], text: str) -> bool:
    """Whether `pattern` (with a `rest` group) occurs in `text` followed by a task."""
    match = pattern.search(text)
    return match is not None and _is_task(match.group("rest"))


def _addressee(text: str, lower_words: set[str]) -> str | None:
    for pattern in (_VOCATIVE_START, _VOCATIVE_END):
        match = pattern.search(text)
        if match and _is_name(match.group("name"), lower_words):
            return match.group("name")
    return None


@dataclass(frozen=True)
class _Found:
    kind: str  # "self", "named", "request" or "team"
    owner: str | None


def _commitment(sentence: Sentence, lower_words: set[str]) -> _Found | None:
    """What kind of commitment `sentence` states, and who owns it, if it is one."""
    text = sentence.text
    question = text.rstrip().endswith("?")
    for asked in _ASK_NAMED.finditer(text):
        name = asked.group("name") or asked.group("name2")
        if _is_name(name, lower_words) and _is_task(text[asked.end() :]):
            return _Found("request", name)
    if _task_after(_REQUEST, text):
        return _Found("request", _addressee(text, lower_words))
    for named in _NAMED.finditer(text):
        if _is_name(named.group("name"), lower_words) and _is_task(text[named.end() :]):
            return _Found("named", named.group("name"))
    if not question and not _NEGATED_FIRST_PERSON.search(text) and _task_after(_FIRST_PERSON, text):
        return _Found("self", sentence.speaker)
    if not question and _task_after(_TEAM, text):
        return _Found("team", None)
    if _EXPLICIT.search(text):
        return _Found("team", _addressee(text, lower_words))
    return None


def _lower_words(sentences: Sequence[Sentence]) -> set[str]:
    return {w for s in sentences for w in _WORD.findall(s.text) if w[:1].islower()}


def find_action_items(sentences: Sequence[Sentence]) -> list[ActionItem]:
    """Commitments and accepted requests, in transcript order."""
    lower_words = _lower_words(sentences)
    items: list[ActionItem] = []
    absorbed: set[int] = set()
    for i, sentence in enumerate(sentences):
        if i in absorbed:
            continue
        found = _commitment(sentence, lower_words)
        if found is None:
            continue
        owner, due = found.owner, due_phrase(sentence.text)
        reply = sentences[i + 1] if i + 1 < len(sentences) else None
        if (
            found.kind in ("request", "team")
            and reply is not None
            and reply.speaker is not None
            and reply.speaker != sentence.speaker
            and _ACCEPTANCE.search(reply.text)
            and not _REFUSAL.search(reply.text)
        ):
            # The reply takes the task on; it is not a second action item.
            absorbed.add(i + 1)
            owner = owner or reply.speaker
            due = due or due_phrase(reply.text)
        items.append(ActionItem(sentence.text, owner, due, sentence.segment_index))
    return items


# -- decisions ----------------------------------------------------------------------------

_DECISION = re.compile(
    r"\b(?:we(?:'ve|\s+have)?\s+(?:all\s+)?(?:decided|agreed|settled\s+on|chosen|chose|picked"
    r"|landed\s+on|concluded|signed\s+off)"
    r"|we\s+(?:all\s+)?agree\s+(?:that|to|on)"
    r"|(?:it's|it\s+is|that's|that\s+is|so\s+that's)\s+(?:decided|settled|agreed|final)"
    r"|(?:let's|let\s+us)\s+(?:go|stick|move\s+forward|proceed|run)\s+with"
    r"|we(?:'ll|\s+will|'re|\s+are)\s+(?:going\s+to\s+)?(?:go(?:ing)?|stick(?:ing)?"
    r"|mov(?:e|ing)\s+forward|proceed(?:ing)?)\s+with"
    r"|(?:the|our|final)\s+decision\s+(?:is|was)|decision\s*:"
    r"|(?:going\s+forward|from\s+now\s+on),?\s+we(?:'ll|\s+will)"
    r"|(?:let's|let\s+us)\s+not\s+(?!forget|worry|panic|get\s+ahead)"
    r"|(?:that's|that\s+is|is)\s+what\s+we(?:'ll|\s+will|'re\s+going\s+to)\s+do"
    r"|(?:that's|that\s+is)\s+(?:the|our)\s+plan"
    r"|(?:is|are|was|were|has\s+been|have\s+been)\s+(?:now\s+)?(?:officially\s+)?(?:approved"
    r"|signed\s+off|postponed|cancell?ed|canceled|deferred|scrapped|dropped|put\s+on\s+hold))",
    re.IGNORECASE,
)
_NOT_DECIDED = re.compile(
    r"\b(?:haven't|have\s+not|hasn't|has\s+not|didn't|did\s+not|don't|do\s+not|can't|cannot"
    r"|not\s+yet|never|nothing|isn't|is\s+not|wasn't|weren't|aren't)\s+(?:\w+\s+){0,2}?"
    r"(?:decided|agreed|settled|approved|final|decide|agree)"
    r"|\b(?:need|needs|have|has|yet|should|must|going|want|try)\s+to\s+(?:decide|agree)"
    r"|\b(?:if|once|until|before|when|whether|unless)\s+we\s+(?:\w+\s+)?(?:decide|agree)",
    re.IGNORECASE,
)


def find_decisions(sentences: Sequence[Sentence]) -> list[Decision]:
    """Sentences that state a decision, in transcript order."""
    return [
        Decision(s.text, s.segment_index)
        for s in sentences
        if _DECISION.search(s.text)
        and not _NOT_DECIDED.search(s.text)
        and not s.text.rstrip().endswith("?")
    ]
