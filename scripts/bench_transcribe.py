"""Transcription speed and accuracy: bare openai-whisper against the transcribe stage's
own settings, side by side -> bench/transcribe.json.

`make bench-transcribe` runs this (`python -m scripts.bench_transcribe`). Configurations:

* ``bare``: `model.transcribe` as the worker called it before this benchmark existed
  (greedy with temperature fallback, word timestamps; every window encoded twice);
* ``stage``: the stage's default, `transcribe_file` with each window encoded once;
* ``beamN`` (``beam2`` and ``beam5`` by default): the same with TRANSCRIBE_BEAM_SIZE=N;
* ``ct2-fp32``, ``ct2-int8``, ``ct2-int8-beam5``: the ctranslate2 engine
  (TRANSCRIBE_ENGINE=ctranslate2, faster-whisper) on the same weights, float32 or int8,
  greedy or beam 5; its process never imports torch.

A ``+vad`` suffix (``stage+vad``, ``ct2-fp32+vad``) runs a configuration behind the
voice-activity gate (`processing_service.transcribe.speech`, on by default in the
worker); the others run without it, as they were first measured. ``--configs`` picks
some of them (``bare`` is the one the others are compared with).

``--section gate`` compares each engine with and without the gate (``GATE_CONFIGS``) on
the same recordings plus the last meeting with two minutes of digital silence before and
after it, and measures what the gate keeps of the AMI excerpts' annotated speech; it
writes the file's ``gate`` entry and keeps the rest.

Each configuration of each model runs in a fresh process (spawned), loads the model and
warms up on a short clip first (numba's JIT for word timestamps), then transcribes every
recording: the pyannote sample (real speech, its STM transcript) and generated meetings
(espeak-ng voices reading known sentences, `tests.support.diarization_audio.meeting`).
Reported per configuration: RTF over all the audio, WER over all the words (reference
and hypothesis normalised alike), the word timings' agreement with ``bare`` (mean
absolute difference of the start of words that both found at the same position), and
the process's peak RSS. The order of the configurations alternates between models, so
that a machine getting busier tilts none of them.
"""

from __future__ import annotations

import argparse
import difflib
import json
import multiprocessing
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scripts.bench_accuracy import AMI_DIR, ami_recordings
from scripts.bench_ingest.report import git_info, machine_info
from tests.support.diarization_audio import TUNING_VOICES, meeting
from tests.support.models import MODEL_CACHE_DIR, provision
from tests.support.speech import duration_s, speak
from tests.support.wer import normalize_words, word_edit_distance

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The ctranslate2 engine's configurations: compute type, beam size.
CT2_CONFIGS = {"ct2-fp32": ("float32", 1), "ct2-int8": ("int8", 1), "ct2-int8-beam5": ("int8", 5)}
CONFIGS = ("bare", "stage", "beam2", "beam5", *CT2_CONFIGS)
#: Suffix of a configuration run with the voice-activity gate (TRANSCRIBE_VAD, the
#: worker's default): ``stage+vad``, ``ct2-fp32+vad``.
VAD = "+vad"
#: Silence before and after the meeting of the gate's recording with breaks.
BREAK_S = 120.0
#: The gate's own comparison (``--section gate``): each engine with and without it.
GATE_CONFIGS = ("bare", "stage", "stage+vad", "ct2-fp32", "ct2-fp32+vad")
Transcribe = Callable[[Path], Any]


@dataclass(frozen=True)
class Recording:
    name: str
    wav: str
    seconds: float
    text: str


def recordings(work: Path, meetings: int) -> list[Recording]:
    found = []
    try:
        import pyannote.audio  # noqa: PLC0415

        folder = Path(pyannote.audio.__file__).parent / "sample"
        stm = (folder / "sample.stm").read_text(encoding="utf-8").splitlines()
        text = " ".join(
            line.split(maxsplit=5)[5]
            for line in stm
            if not line.startswith(";;") and len(line.split(maxsplit=5)) == 6
        )
        wav = folder / "sample.wav"
        found.append(Recording("pyannote-sample", str(wav), duration_s(wav), text))
    except (ImportError, OSError):
        print("pyannote's sample is not installed: generated meetings only", file=sys.stderr)
    for i in range(meetings):
        conv = meeting(work / f"meeting{i}.wav", TUNING_VOICES, 3 + i % 3, seed=200 + i)
        text = " ".join(t.text for t in conv.turns)
        found.append(Recording(f"meeting-{3 + i % 3}v-{i}", str(conv.wav), conv.duration, text))
    return found


def with_breaks(work: Path, recording: Recording, silence_s: float) -> Recording:
    """`recording` with `silence_s` of digital silence before and after it (sox): what
    a meeting with breaks gives the decoder."""
    out = work / f"{recording.name}-breaks.wav"
    pad = ["pad", str(silence_s), str(silence_s)]
    command = ["sox", recording.wav, "-r", "16000", "-c", "1", str(out), *pad]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return Recording(f"{recording.name}-with-breaks", str(out), duration_s(out), recording.text)


def gate_on_real_meetings() -> dict[str, Any]:
    """What the gate keeps of the AMI excerpts (real far-field meetings, who-spoke-when
    annotated): the share of the annotated speech inside its spans, and of all audio."""
    import numpy as np  # noqa: PLC0415
    import whisper  # noqa: PLC0415

    from processing_service.transcribe.speech import SAMPLE_RATE, find_speech  # noqa: PLC0415

    rows = []
    for rec in ami_recordings(AMI_DIR, REPO_ROOT / "var" / "bench-transcribe"):
        audio = whisper.load_audio(str(rec.wav))
        times = np.arange(0, len(audio) / SAMPLE_RATE, 0.01)  # every 10 ms
        kept = np.zeros(len(times), bool)
        for a, b in find_speech(audio).spans:
            kept |= (times >= a / SAMPLE_RATE) & (times < b / SAMPLE_RATE)
        spoken = np.zeros(len(times), bool)
        for start, end, _ in rec.turns:
            spoken |= (times >= start) & (times < end)
        seconds = {"audio_s": len(times), "speech_s": spoken.sum(), "kept_s": kept.sum(),
                   "speech_kept_s": (spoken & kept).sum()}  # fmt: skip
        rows.append({"name": rec.name} | {k: round(float(v) / 100, 1) for k, v in seconds.items()})
    total = {k: sum(r[k] for r in rows) for k in ("audio_s", "speech_s", "kept_s", "speech_kept_s")}
    return {
        "recordings": rows,
        "speech_kept": round(total["speech_kept_s"] / max(total["speech_s"], 1e-9), 3),
        "audio_kept": round(total["kept_s"] / max(total["audio_s"], 1e-9), 3),
    }


def openai_whisper(config: str, model_name: str, threads: int, gate: float | None) -> Transcribe:
    """openai-whisper's `model.transcribe` (``bare``) or the stage's `transcribe_file`."""
    import torch  # noqa: PLC0415

    from processing_service.transcribe.weights import load_whisper_checkpoint  # noqa: PLC0415
    from processing_service.transcribe.whisper import (  # noqa: PLC0415
        resolve_model,
        reuse_encodings,
        transcribe_file,
    )

    torch.set_num_threads(threads)
    model = load_whisper_checkpoint(resolve_model(model_name, MODEL_CACHE_DIR))
    if config != "bare":
        reuse_encodings(model)
    beam = int(config.removeprefix("beam")) if config.startswith("beam") else 1
    language = None if model.is_multilingual else "en"

    def transcribe(path: Path) -> Any:
        torch.manual_seed(0)  # a temperature fallback samples: the same draws each run
        return transcribe_file(model, path, language, 0.0, beam_size=beam, vad_threshold=gate)

    return transcribe


def ctranslate2_engine(
    config: str, model_name: str, threads: int, gate: float | None
) -> Transcribe:
    """The ctranslate2 engine's `transcribe_file` with the configuration's settings."""
    import ctranslate2  # noqa: PLC0415

    from processing_service.transcribe import faster  # noqa: PLC0415

    compute_type, beam = CT2_CONFIGS[config]
    model = faster.get_model(model_name, MODEL_CACHE_DIR, compute_type, threads)

    def transcribe(path: Path) -> Any:
        ctranslate2.set_random_seed(0)
        return faster.transcribe_file(model, path, None, 0.0, beam_size=beam, vad_threshold=gate)

    return transcribe


def peak_rss_kib() -> int:
    """This process's peak RSS since it started: VmHWM, which starts anew at exec. (Linux
    carries ru_maxrss over exec: a spawned process would report at least the RSS its
    parent had when it started, about 500 MB here with pyannote imported.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_config(config: str, model_name: str, threads: int, items: list[dict[str, Any]],
               warmup: str) -> dict[str, Any]:  # fmt: skip
    """In a fresh process: load, warm up, transcribe every recording with `config`."""
    from processing_service.transcribe.speech import THRESHOLD  # noqa: PLC0415

    base = config.removesuffix(VAD)
    engine = ctranslate2_engine if base in CT2_CONFIGS else openai_whisper
    transcribe = engine(base, model_name, threads, THRESHOLD if config.endswith(VAD) else None)
    transcribe(Path(warmup))
    results = []
    for item in items:
        started = time.perf_counter()
        transcript = transcribe(Path(item["wav"]))
        seconds = time.perf_counter() - started
        words = [w for s in transcript.segments for w in s.words]
        results.append(
            {
                "name": item["name"],
                "seconds": round(seconds, 2),
                "rtf": round(seconds / item["seconds"], 4),
                "text": " ".join(s.text for s in transcript.segments),
                "word_starts": [[w.word, w.start] for w in words],
            }
        )
    rss_mib = peak_rss_kib() / 1024
    return {"config": config, "model": model_name, "recordings": results,
            "peak_rss_mib": round(rss_mib, 1)}  # fmt: skip


def timing_error_ms(base: list[list[Any]], other: list[list[Any]]) -> float | None:
    """Mean |start difference| of the words both transcripts have, matched by aligning
    the two word sequences (difflib), so that an inserted or dropped word shifts nothing."""
    a = [str(w[0]).strip().lower() for w in base]
    b = [str(w[0]).strip().lower() for w in other]
    pairs = [
        abs(base[block.a + k][1] - other[block.b + k][1])
        for block in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks()
        for k in range(block.size)
    ]
    return round(1000 * statistics.mean(pairs), 1) if pairs else None


def summarise(run: dict[str, Any], items: list[Recording], bare: dict[str, Any] | None) -> None:
    by_name = {r.name: r for r in items}
    errors = words = 0
    audio = spent = 0.0
    timing = []
    for row in run["recordings"]:
        reference = normalize_words(by_name[row["name"]].text)
        hypothesis = normalize_words(row["text"])
        row["wer"] = round(word_edit_distance(reference, hypothesis) / max(len(reference), 1), 4)
        errors += word_edit_distance(reference, hypothesis)
        words += len(reference)
        audio += by_name[row["name"]].seconds
        spent += row["seconds"]
        if bare is not None:
            base = next(r for r in bare["recordings"] if r["name"] == row["name"])
            error = timing_error_ms(base["word_starts"], row["word_starts"])
            if error is not None:
                timing.append(error)
    run["rtf"] = round(spent / audio, 4)
    run["wer"] = round(errors / max(words, 1), 4)
    run["word_start_error_vs_bare_ms"] = round(statistics.mean(timing), 1) if timing else None


def write(out: Path, section: str, results: dict[str, Any]) -> None:
    """`results` into `out`: the whole file, or for the gate its `gate` entry alone."""
    previous = json.loads(out.read_text()) if out.is_file() else {}
    if section == "gate":
        results["real_meetings"] = gate_on_real_meetings()
        results = previous | {"gate": results}
    elif "gate" in previous:
        results["gate"] = previous["gate"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_transcribe")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/transcribe.json")
    parser.add_argument("--models", default="tiny.en,base")
    parser.add_argument("--meetings", type=int, default=4, help="generated meetings")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", help=f"default: {','.join(CONFIGS)}"
                        f" (with --section gate: {','.join(GATE_CONFIGS)})")  # fmt: skip
    parser.add_argument("--section", choices=("runs", "gate"), default="runs",
                        help="gate: the voice-activity gate on and off, on a recording with"
                        " breaks too, into the file's `gate` entry (the rest is kept)")  # fmt: skip
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    default = GATE_CONFIGS if args.section == "gate" else CONFIGS
    configs = [c.strip() for c in (args.configs or ",".join(default)).split(",") if c.strip()]
    if unknown := sorted({c.removesuffix(VAD) for c in configs} - set(CONFIGS)):
        parser.error(f"unknown configurations {unknown}; choose from {', '.join(CONFIGS)}")
    work = REPO_ROOT / "var" / "bench-transcribe"
    work.mkdir(parents=True, exist_ok=True)
    for model in models:
        provision("processing_service.transcribe.weights", "--model", model)
        if any(config.removesuffix(VAD) in CT2_CONFIGS for config in configs):
            provision("processing_service.transcribe.weights", "--model", model, "--ctranslate2")
    items = recordings(work, args.meetings)
    if args.section == "gate":
        items += [with_breaks(work, items[-1], BREAK_S)]
    warmup = speak("A short sentence to warm the model up.", work / "warmup.wav")
    audio_s = sum(r.seconds for r in items)
    print(f"{len(items)} recordings, {audio_s:.0f} s of audio", flush=True)
    results: dict[str, Any] = {
        "benchmark": "transcribe",
        "started_at": datetime.now(UTC).isoformat(),
        "machine": machine_info(),
        "git": git_info(),
        "config": {
            "threads": args.threads,
            "models": models,
            "configs": configs,
            "audio_s": round(audio_s, 1),
            "recordings": [asdict(r) | {"text": None} for r in items],
        },
        "runs": {},
    }
    spawn = multiprocessing.get_context("spawn")
    for index, model in enumerate(models):
        order = configs if index % 2 == 0 else configs[::-1]
        runs: dict[str, dict[str, Any]] = {}
        for config in order:
            with spawn.Pool(1) as pool:
                runs[config] = pool.apply(
                    run_config,
                    (config, model, args.threads, [asdict(r) for r in items], str(warmup)),
                )
            print(f"  {model} {config}: done", flush=True)
        for config in configs:
            summarise(runs[config], items, runs.get("bare") if config != "bare" else None)
            run = runs[config]
            print(f"{model:<8} {config:<14} RTF {run['rtf']:.4f}  WER {run['wer']:.4f}"
                  f"  word start vs bare {run['word_start_error_vs_bare_ms']} ms"
                  f"  peak RSS {run['peak_rss_mib']:.0f} MiB", flush=True)  # fmt: skip
        for run in runs.values():
            for row in run["recordings"]:
                del row["word_starts"]  # compared above; too long to keep
        if "bare" in runs:
            for config in configs:
                runs[config]["speedup_vs_bare"] = round(
                    runs["bare"]["rtf"] / runs[config]["rtf"], 2
                )
                runs[config]["peak_rss_vs_bare"] = round(
                    runs[config]["peak_rss_mib"] / runs["bare"]["peak_rss_mib"], 2
                )
                runs[config]["wer_points_vs_bare"] = round(
                    100 * (runs[config]["wer"] - runs["bare"]["wer"]), 2
                )
        results["runs"][model] = runs
    results["finished_at"] = datetime.now(UTC).isoformat()
    write(args.out, args.section, results)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
