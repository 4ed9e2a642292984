"""Accuracy benchmark: who spoke when, who said which word, and what was said.

Runs the diarize stage's own ``Diarizer`` (and, where the words are known, the transcribe
stage's whisper call and the attribution step after it) over every annotated set there is:

* ``ami``: the nine 30 s AMI meeting excerpts in ``../shared/data/ami-excerpts`` (real
  far-field speech, 1-4 people, overlap), scored over their UEM range;
* ``sample``: the two-speaker recording that ships inside pyannote.audio, with its RTTM
  and STM transcript;
* ``tuning`` / ``held-out``: generated meetings of 2-6 espeak-ng voices
  (``tests.support.diarization_audio.meeting``). Settings are chosen on the tuning voices
  only; the held-out voices show whether a choice generalises.

Per recording it writes DER with missed speech, false alarm and confusion apart (overlap
counted, no collar), the speakers found vs true, the do-nothing DER (all reference speech
as one speaker: a perfect voice detector and no clustering), the diarization real-time
factor, and where words are known: word-level speaker attribution (each transcribed word
against the reference turn it falls in) and WER, for each whisper model compared.
``--compare-clustering`` also diarizes everything with pyannote's clustering defaults
(the project's setting before this benchmark), side by side in the same run.

Results go to a JSON file (default bench/accuracy.json) and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import SpeakerTurn
from processing_service.diarize.attribution import attribute, relabel
from tests.support.der import diarization_error_rate
from tests.support.diarization_audio import HELD_OUT_VOICES, TUNING_VOICES, meeting
from tests.support.wer import word_error_rate

REPO = Path(__file__).resolve().parent.parent
AMI_DIR = REPO.parent / "shared" / "data" / "ami-excerpts"
#: pyannote's own AgglomerativeClustering setting, the project's default before issue 11.
PREVIOUS_CLUSTERING = {"method": "centroid", "min_cluster_size": 12, "threshold": 0.7}

RefTurn = tuple[float, float, str]


@dataclass
class Recording:
    """A 16 kHz mono 16-bit WAV with reference turns, scored over [0, ``scored_s``]."""

    set: str
    name: str
    wav: Path
    turns: list[RefTurn]
    scored_s: float
    text: str | None = None  # the reference transcript, where known


def read_rttm(path: Path) -> dict[str, list[RefTurn]]:
    out: dict[str, list[RefTurn]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[0] == "SPEAKER":
            start, duration = float(parts[3]), float(parts[4])
            out.setdefault(parts[1], []).append((start, start + duration, parts[7]))
    return out


def to_pcm16(src: Path, dst: Path) -> Path:
    """Any WAV scipy reads (AMI's are 32-bit float) as 16 kHz mono 16-bit PCM."""
    import numpy as np  # noqa: PLC0415
    from scipy.io import wavfile  # noqa: PLC0415

    rate, data = wavfile.read(src)
    if rate != 16000:
        raise ValueError(f"{src}: {rate} Hz, expected 16000")
    if data.dtype.kind == "f":
        data = np.clip(data, -1.0, 1.0) * 32767
    if data.ndim > 1:
        data = data.mean(axis=1)
    with wave.open(str(dst), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(data.astype("<i2").tobytes())
    return dst


def ami_recordings(directory: Path, work: Path) -> Iterator[Recording]:
    if not (directory / "train.rttm").is_file():
        print(f"no AMI excerpts in {directory}: skipped", file=sys.stderr)
        return
    uem = {}
    if (directory / "train.uem").is_file():
        for line in (directory / "train.uem").read_text(encoding="utf-8").splitlines():
            uri, _, start, end = line.split()
            uem[uri] = (float(start), float(end))
    for uri, turns in sorted(read_rttm(directory / "train.rttm").items()):
        start, end = uem.get(uri, (0.0, max(e for _, e, _ in turns)))
        if start != 0.0:
            raise ValueError(f"{uri}: UEM starting at {start} is not supported")
        yield Recording("ami", uri, to_pcm16(directory / f"{uri}.wav", work / f"{uri}.wav"),
                        turns, end)  # fmt: skip


def pyannote_sample() -> Recording | None:
    try:
        import pyannote.audio  # noqa: PLC0415
    except ImportError:
        return None
    folder = Path(pyannote.audio.__file__).parent / "sample"
    if not (folder / "sample.wav").is_file():
        return None
    turns = next(iter(read_rttm(folder / "sample.rttm").values()))
    text = []
    for line in (folder / "sample.stm").read_text(encoding="utf-8").splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and not line.startswith(";;"):
            text.append(parts[5])
    with wave.open(str(folder / "sample.wav")) as wav:
        seconds = wav.getnframes() / wav.getframerate()
    return Recording("sample", "pyannote-sample", folder / "sample.wav", turns, seconds,
                     " ".join(text))  # fmt: skip


def generated(work: Path, seeds: int, speakers: Sequence[int]) -> Iterator[Recording]:
    for label, voices in (("tuning", TUNING_VOICES), ("held-out", HELD_OUT_VOICES)):
        for n in speakers:
            for seed in range(seeds):
                conv = meeting(work / f"{label}_{n}_{seed}.wav", voices, n, seed=seed + 100 * n)
                yield Recording(
                    label, f"{label}-{n}v-{seed}", conv.wav,
                    [(t.start, t.end, t.speaker) for t in conv.turns], conv.duration,
                    " ".join(t.text for t in conv.turns),
                )  # fmt: skip


def clip(turns: Sequence[RefTurn], end: float) -> list[RefTurn]:
    return [(s, min(e, end), k) for s, e, k in turns if s < end and min(e, end) > s]


def score(rec: Recording, hypothesis: Sequence[SpeakerTurn]) -> dict[str, Any]:
    ref = clip(rec.turns, rec.scored_s)
    hyp = clip([(t.start, t.end, t.speaker) for t in hypothesis], rec.scored_s)
    result = diarization_error_rate(ref, hyp)
    baseline = diarization_error_rate(ref, [(s, e, "one") for s, e, _ in ref])
    return {
        "der": round(result.der, 4),
        "missed": round(result.missed_rate, 4),
        "false_alarm": round(result.false_alarm_rate, 4),
        "confusion": round(result.confusion_rate, 4),
        "speakers_found": len({k for *_, k in hyp}),
        "speakers_true": len({k for *_, k in ref}),
        "do_nothing_der": round(baseline.der, 4),
        "mapping": result.mapping,
    }


def word_attribution(
    words: Sequence[Any], reference: Sequence[RefTurn], mapping: dict[str, str]
) -> float | None:
    """Share of words (whose midpoint lies in exactly one reference turn) given that speaker."""
    judged = right = 0
    for word in words:
        middle = (word.start + word.end) / 2
        owners = {k for s, e, k in reference if s <= middle < e}
        if len(owners) != 1:
            continue  # in a pause or in overlap: no single right answer
        judged += 1
        right += mapping.get(str(word.speaker)) == owners.pop()
    return round(right / judged, 4) if judged else None


class Diarize:
    """The production diarizer, its clustering set to ``clustering`` for each call."""

    def __init__(self, cache_dir: Path, threads: int, clustering: dict[str, Any]) -> None:
        from processing_service.diarize.diarizer import load_diarizer  # noqa: PLC0415

        self.diarizer = load_diarizer("offline", cache_dir, torch_threads=threads)
        self.clustering = clustering

    def __call__(self, wav: Path) -> tuple[list[SpeakerTurn], float]:
        stage = self.diarizer.pipeline.clustering
        saved = {key: getattr(stage, key) for key in self.clustering}
        for key, value in self.clustering.items():
            setattr(stage, key, value)
        try:
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                turns = self.diarizer.diarize(wav)
            elapsed = time.perf_counter() - started
        finally:
            for key, value in saved.items():
                setattr(stage, key, value)
        # Named as the result names them, so the DER mapping applies to attributed words.
        return relabel(turns), elapsed


def transcriber(model_name: str, cache_dir: Path, threads: int) -> Callable[[Path], Any]:
    from processing_service.transcribe.whisper import get_model, transcribe_file  # noqa: PLC0415

    model = get_model(model_name, cache_dir, threads)
    return lambda wav: transcribe_file(model, wav, None, 0.0)


def mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.fmean(present), 4) if present else None


def summarize(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in sorted({r["set"] for r in rows}):
        mine = [r for r in rows if r["set"] == name and key in r]
        if not mine:
            continue
        d = [r[key] for r in mine]
        out[name] = {
            "recordings": len(mine),
            "der": mean([x["der"] for x in d]),
            "missed": mean([x["missed"] for x in d]),
            "false_alarm": mean([x["false_alarm"] for x in d]),
            "confusion": mean([x["confusion"] for x in d]),
            "do_nothing_der": mean([x["do_nothing_der"] for x in d]),
            "worse_than_do_nothing": sum(x["der"] > x["do_nothing_der"] for x in d),
            "speaker_count_exact": round(
                statistics.fmean(x["speakers_found"] == x["speakers_true"] for x in d), 4
            ),
            "word_attribution": mean([x.get("word_attribution") for x in d]),
            "rtf": round(sum(x["diarize_s"] for x in d) / sum(r["seconds"] for r in mine), 4),
        }
    return out


def diarize_all(
    recordings: Sequence[Recording], diarizers: dict[str, Diarize]
) -> list[dict[str, Any]]:
    """Diarize every recording with every configuration; one scored row per recording."""
    rows: list[dict[str, Any]] = []
    for rec in recordings:
        with wave.open(str(rec.wav)) as wav:
            seconds = wav.getnframes() / wav.getframerate()
        row: dict[str, Any] = {"set": rec.set, "name": rec.name, "seconds": round(seconds, 2)}
        for name, diarize in diarizers.items():
            turns, elapsed = diarize(rec.wav)
            row[name] = {**score(rec, turns), "diarize_s": round(elapsed, 2), "_turns": turns}
        rows.append(row)
        found = "  ".join(
            f"{n}: DER {row[n]['der']:.3f} ({row[n]['speakers_found']}/{row[n]['speakers_true']})"
            for n in diarizers
        )
        print(f"{rec.set:9s} {rec.name:20s} {found}", flush=True)
    return rows


def transcribe_all(
    recordings: Sequence[Recording],
    rows: list[dict[str, Any]],
    model_name: str,
    args: argparse.Namespace,
    *,
    configs: Sequence[str],
    score_words: bool,
) -> dict[str, Any]:
    """WER and RTF of ``model_name`` where the text is known; word attribution if asked."""
    transcribe = transcriber(model_name, args.cache_dir, args.threads)
    transcribe(recordings[0].wav)  # warm up (model load, numba JIT)
    wers, audio_s, wall_s = [], 0.0, 0.0
    for rec, row in zip(recordings, rows, strict=True):
        if rec.text is None:
            continue
        started = time.perf_counter()
        transcript = transcribe(rec.wav)
        wall_s += time.perf_counter() - started
        audio_s += row["seconds"]
        wer = word_error_rate(rec.text, " ".join(s.text for s in transcript.segments))
        wers.append(wer)
        row.setdefault("wer", {})[model_name] = round(wer, 4)
        for name in configs if score_words else ():
            speakers = attribute(transcript.segments, row[name]["_turns"])
            words = [w for segment in speakers.segments for w in segment.words]
            row[name]["word_attribution"] = word_attribution(words, rec.turns, row[name]["mapping"])
    out = {
        "wer_mean": mean(wers),
        "rtf": round(wall_s / audio_s, 4) if audio_s else None,
        "recordings": len(wers),
    }
    print(f"whisper {model_name}: WER {out['wer_mean']} RTF {out['rtf']}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="bench/accuracy.json")
    parser.add_argument("--ami-dir", type=Path, default=AMI_DIR)
    parser.add_argument("--seeds", type=int, default=2, help="generated meetings per size")
    parser.add_argument("--speakers", default="2,3,4,5,6", help="voices per generated meeting")
    parser.add_argument("--models", default="tiny.en,base", help="whisper models for WER/RTF")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--compare-clustering", action=argparse.BooleanOptionalAction,
                        default=True, help="also run pyannote's clustering defaults")  # fmt: skip
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("MODEL_CACHE_DIR", str(REPO / ".cache" / "models"))),
    )
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    from processing_service.diarize.diarizer import CLUSTERING  # noqa: PLC0415

    configs: dict[str, dict[str, Any]] = {"current": dict(CLUSTERING)}
    if args.compare_clustering:
        configs["previous"] = PREVIOUS_CLUSTERING

    with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
        work = Path(tmp)
        recordings = list(ami_recordings(args.ami_dir, work))
        sample = pyannote_sample()
        recordings += [sample] if sample else []
        recordings += generated(work, args.seeds, [int(n) for n in args.speakers.split(",")])
        diarizers = {name: Diarize(args.cache_dir, args.threads, c) for name, c in configs.items()}
        rows = diarize_all(recordings, diarizers)
        whisper_rows = {
            model: transcribe_all(
                recordings, rows, model, args, configs=list(configs), score_words=model == models[0]
            )
            for model in models
        }

    for row in rows:
        for name in configs:
            row[name].pop("_turns")
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": platform.machine(),
            "python": platform.python_version(),
        },
        "clustering": configs,
        "summary": {name: summarize(rows, name) for name in configs},
        "whisper": whisper_rows,
        "recordings": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_table(result, list(configs))
    print(f"wrote {args.out}")
    return 0


def print_table(result: dict[str, Any], configs: list[str]) -> None:
    print(f"\n{'set':9s} {'clustering':10s} {'DER':>6s} {'miss':>6s} {'FA':>6s} {'conf':>6s} "
          f"{'1-spk':>6s} {'worse':>5s} {'#exact':>6s} {'words':>6s} {'RTF':>6s}")  # fmt: skip
    for name in configs:
        for set_name, s in result["summary"][name].items():
            attribution = "-" if s["word_attribution"] is None else f"{s['word_attribution']:.3f}"
            print(f"{set_name:9s} {name:10s} {s['der']:6.3f} {s['missed']:6.3f} "
                  f"{s['false_alarm']:6.3f} {s['confusion']:6.3f} {s['do_nothing_der']:6.3f} "
                  f"{s['worse_than_do_nothing']:5d} {s['speaker_count_exact']:6.2f} "
                  f"{attribution:>6s} {s['rtf']:6.3f}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
