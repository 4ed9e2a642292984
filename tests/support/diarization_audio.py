"""Conversations with known speaker turns, for diarization tests (test helper, not service code).

Each speaker is an espeak-ng voice (language variant, pitch, speed); every turn is
synthesised once, converted to 16 kHz mono 16-bit PCM with sox, trimmed of its leading
and trailing silence, and appended with a short pause, so each turn's start and end in
the output are known to the sample. Long recordings reuse a pool of synthesised turns per
voice and are written to disk as they are built (memory stays flat for hours of audio).
"""

from __future__ import annotations

import array
import random
import subprocess
import sys
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SAMPLE_RATE = 16000
# |sample| above this (of 32767) counts as speech when trimming a synthesised turn.
_SILENCE_LEVEL = 200


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice: ``-v`` name, ``-p`` pitch (0-99), ``-s`` speed (words/min)."""

    name: str
    pitch: int
    speed: int


@dataclass(frozen=True)
class Turn:
    """One reference speech turn, in seconds."""

    start: float
    end: float
    speaker: str
    text: str = ""


@dataclass(frozen=True)
class Conversation:
    """A generated 16 kHz mono WAV and its reference turns."""

    wav: Path
    turns: list[Turn]
    duration: float

    @property
    def speakers(self) -> list[str]:
        """Reference speakers, in order of first appearance."""
        return list(dict.fromkeys(t.speaker for t in self.turns))


#: Voices told apart by both models of the pipeline. Measured on alternating two-voice
#: clips: pyannote's segmentation puts both voices of a pair in one local speaker in at
#: most 15% of its (10 s chunk, speaker) tracks (0% for pairs with alice or carol), and
#: CAM++ puts their centroids at least 0.3 apart (cosine). Rejected: ``en-us`` next to
#: ``en-gb``, ``en+klatt``, ``en+croak`` or ``en+david`` (one local speaker in 50-90% of
#: tracks: segmentation-3.0 hears one speaker).
VOICES: dict[str, Voice] = {
    "alice": Voice("en+f3", 70, 165),
    "bob": Voice("en+m7", 20, 135),
    "carol": Voice("en+klatt", 50, 160),
    "dave": Voice("en+Michael", 85, 175),
}

#: Voice sets for the accuracy benchmark and the unseen-voices tests. Diarization is
#: calibrated on ``TUNING_VOICES`` (a superset of ``VOICES``); ``HELD_OUT_VOICES`` use other
#: espeak-ng variants, pitches and speeds and are never used to choose a setting, so a
#: constant fitted to the tuning voices cannot pass on them.
TUNING_VOICES: dict[str, Voice] = {
    **VOICES,
    "erin": Voice("en+f1", 60, 150),
    "frank": Voice("en+m2", 40, 160),
    "gus": Voice("en+Alex", 45, 170),
    "hana": Voice("en+belinda", 65, 145),
}
HELD_OUT_VOICES: dict[str, Voice] = {
    "ivy": Voice("en+f2", 58, 150),
    "jack": Voice("en+m3", 35, 172),
    "kate": Voice("en+f5", 82, 140),
    "liam": Voice("en+m1", 48, 155),
    "mia": Voice("en+Annie", 66, 178),
    "noah": Voice("en+max", 28, 146),
    "olga": Voice("en+steph", 75, 162),
    "pete": Voice("en+grandpa", 22, 130),
    "quinn": Voice("en+f4", 52, 186),
    "ravi": Voice("en+m5", 55, 122),
}

SENTENCES = (
    "Good morning everyone, let us start with the quarterly numbers.",
    "Revenue grew by eight percent while costs stayed mostly flat.",
    "I think the northern region needs another sales engineer.",
    "The support team answered most tickets within four hours.",
    "Can we move the product launch to the second week of June?",
    "We still have two open questions about the data retention policy.",
    "Please send your comments on the draft budget by Thursday evening.",
    "The new onboarding screens will be ready for review next Monday.",
    "I agree, but the legal team has to approve the contract first.",
    "Our largest customer asked for a discount on the annual renewal.",
    "Let me check the server logs and come back to you this afternoon.",
    "The migration to the new database finished without any downtime.",
    "Who is going to present the roadmap at the board meeting?",
    "We should hire a designer before the end of the summer.",
    "The test coverage of the billing service is still too low.",
    "That sounds reasonable, let us write it down as a decision.",
    "Marketing wants a short video that explains the main features.",
    "The office will be closed on the first Friday of next month.",
    "I will prepare a summary of the customer interviews by Wednesday.",
    "Shipping costs went up again because of the fuel surcharge.",
)

#: A second script pool with other wording and lengths, for generated meetings, with short
#: replies (backchannels) among longer turns.
MEETING_SENTENCES = (
    "Okay.",
    "Right, that makes sense.",
    "Yes, exactly.",
    "I am not sure about that.",
    "Could you share the slides again after the call?",
    "The prototype crashed twice during the customer demo yesterday.",
    "We measured the battery life at roughly eleven hours under normal use.",
    "My concern is that the vendor has not confirmed the delivery date in writing.",
    "Let us park that topic and come back to it on Friday.",
    "The survey had three hundred answers, most of them from small offices.",
    "If we cut the second phase, the budget works without new funding.",
    "I spoke with the warehouse manager and the shelves arrive next week.",
    "Honestly, the old interface was easier for new users to understand.",
    "The translation of the manual into Spanish and German is almost finished.",
    "Can someone take the action item to update the risk register?",
    "We decided to keep the current supplier for another year.",
    "The numbers from the pilot school look promising but the sample is small.",
    "I would rather test it with real customers before we announce anything.",
)

#: Speaker order of the small test conversations; a speaker returns after others spoke.
SCRIPTS: dict[int, tuple[str, ...]] = {
    2: ("alice", "bob", "alice", "bob", "alice", "bob", "bob", "alice"),
    3: ("alice", "bob", "carol", "alice", "carol", "bob", "alice", "carol", "bob"),
    4: ("alice", "bob", "carol", "dave", "bob", "alice", "dave", "carol", "alice", "dave"),
}


def synthesize(text: str, voice: Voice, workdir: Path) -> array.array[int]:
    """espeak-ng speech of ``text`` as 16 kHz 16-bit samples, edge silence trimmed."""
    raw, pcm = workdir / "turn.wav", workdir / "turn16k.raw"
    subprocess.run(
        [
            *("espeak-ng", "-v", voice.name, "-p", str(voice.pitch), "-s", str(voice.speed)),
            *("-w", str(raw), text),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        [
            *("sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16"),
            *("-e", "signed", "-t", "raw", str(pcm)),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    samples = array.array("h", pcm.read_bytes())
    if sys.byteorder != "little":
        samples.byteswap()
    loud = [i for i, s in enumerate(samples) if abs(s) > _SILENCE_LEVEL]
    if not loud:
        raise ValueError(f"espeak-ng produced silence for {text!r}")
    return samples[loud[0] : loud[-1] + 1]


def build_conversation(
    out: Path,
    script: Sequence[str],
    *,
    voices: dict[str, Voice] | None = None,
    sentences: Sequence[str] = SENTENCES,
    sentences_per_turn: tuple[int, int] = (1, 2),
    pause_s: tuple[float, float] = (0.3, 0.8),
    pool_size: int | None = None,
    seed: int = 0,
) -> Conversation:
    """Write a conversation following ``script`` (speaker names, one per turn) to ``out``.

    Each turn says 1-2 of ``sentences`` (``sentences_per_turn``) in the speaker's voice, then a
    pause drawn from ``pause_s`` follows. ``pool_size`` synthesises only that many
    distinct turns per speaker and reuses them (for long recordings). Deterministic for
    a given ``seed``. Returns the WAV path, reference turns and duration.
    """
    voices = voices or VOICES
    rng = random.Random(seed)
    pools: dict[str, list[tuple[str, array.array[int]]]] = {}
    turns: list[Turn] = []
    position = 0  # in samples
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        for speaker in script:
            pool = pools.setdefault(speaker, [])
            if pool_size is not None and len(pool) >= pool_size:
                text, speech = rng.choice(pool)
            else:
                count = rng.randint(*sentences_per_turn)
                text = " ".join(rng.sample(sentences, count))
                speech = synthesize(text, voices[speaker], Path(tmp))
                pool.append((text, speech))
            start = position
            if sys.byteorder != "little":
                speech = array.array("h", speech)
                speech.byteswap()
            wav.writeframes(speech.tobytes())
            position += len(speech)
            turns.append(Turn(start / SAMPLE_RATE, position / SAMPLE_RATE, speaker, text))
            gap = round(rng.uniform(*pause_s) * SAMPLE_RATE)
            wav.writeframes(bytes(2 * gap))
            position += gap
    return Conversation(out, turns, position / SAMPLE_RATE)


def conversation(out_dir: Path, num_speakers: int, seed: int = 0) -> Conversation:
    """The scripted test conversation with 2, 3 or 4 voices (about 35-60 s)."""
    return build_conversation(
        out_dir / f"conversation_{num_speakers}.wav", SCRIPTS[num_speakers], seed=seed
    )


def long_conversation(
    out: Path, seconds: float, num_speakers: int = 3, seed: int = 0, pool_size: int = 12
) -> Conversation:
    """A conversation of about ``seconds`` with ``num_speakers`` voices taking random turns.

    The next speaker is drawn among the others (a speaker may return after any number
    of turns). Turns come from a pool of ``pool_size`` synthesised turns per speaker.
    """
    names = list(VOICES)[:num_speakers]
    rng = random.Random(seed)
    average_turn_s = 5.5  # 1-2 sentences at these speeds, plus the pause
    script = [names[0]]
    while len(script) * average_turn_s < seconds:
        script.append(rng.choice([n for n in names if n != script[-1]]))
    return build_conversation(out, script, pool_size=pool_size, seed=seed)


def meeting(
    out: Path,
    voices: dict[str, Voice],
    num_speakers: int,
    *,
    turns: int | None = None,
    seed: int = 0,
) -> Conversation:
    """A generated meeting of ``num_speakers`` voices drawn from ``voices`` (seeded).

    Unlike the scripted test clips it varies what the tests do not: who speaks next
    (anyone but the current speaker, with a dominant first speaker), turn lengths from a
    one-word reply to three sentences of ``MEETING_SENTENCES``, and pauses of 0.15-1.2 s.
    Every speaker gets at least two turns.
    """
    if not 2 <= num_speakers <= len(voices):
        raise ValueError(f"num_speakers must be 2-{len(voices)}, not {num_speakers}")
    rng = random.Random(seed)
    names = rng.sample(sorted(voices), num_speakers)
    count = turns or 5 + 3 * num_speakers
    weights = [3 if n == names[0] else 1 for n in names]
    script = list(names)
    while len(script) < count or min(script.count(n) for n in names) < 2:
        choice = rng.choices(names, weights)[0]
        if choice != script[-1]:
            script.append(choice)
    return build_conversation(
        out,
        script,
        voices={n: voices[n] for n in names},
        sentences=MEETING_SENTENCES,
        sentences_per_turn=(1, 3),
        pause_s=(0.15, 1.2),
        seed=seed,
    )


def main(argv: list[str] | None = None) -> int:
    """CLI: write a conversation and print its duration and turn count."""
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--speakers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=0, help="0: the scripted clip")
    args = parser.parse_args(argv)
    if args.seconds:
        conv = long_conversation(args.out, args.seconds, args.speakers)
    else:
        conv = build_conversation(args.out, SCRIPTS[args.speakers])
    print(f"{conv.wav}: {conv.duration:.1f} s, {len(conv.turns)} turns, {conv.speakers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
