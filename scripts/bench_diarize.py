"""Diarization benchmark: real-time factor, DER and peak memory on a generated conversation.

Generates an espeak-ng conversation of about 10 minutes (4 voices by default) with known
turns. Then, for each segmentation step compared (default: pyannote's own 0.1 and ours),
a fresh process loads the offline pipeline (timed apart), warms it up on the first 30 s
(a running worker is warm), and diarizes the whole file ``--repeats`` times; the best and
median wall times give the real-time factor (the machine may be shared: the load average
and CPU time are recorded too). DER is scored against the known turns and the child's
peak RSS is read from the kernel. Results go to bench/diarize.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from processing_service.diarize.diarizer import DEFAULT_SEGMENTATION_STEP
from tests.support.der import diarization_error_rate
from tests.support.diarization_audio import long_conversation

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import json, os, resource, sys, time, wave
from pathlib import Path
import torch
from processing_service.diarize.diarizer import load_diarizer
wav, cache, step, threads, repeats = sys.argv[1:6]
warm = Path(wav).with_suffix(".warmup.wav")
with wave.open(wav) as src, wave.open(str(warm), "wb") as dst:
    dst.setparams(src.getparams())
    dst.writeframes(src.readframes(30 * src.getframerate()))
t = time.perf_counter()
diarizer = load_diarizer("offline", Path(cache), segmentation_step=float(step),
                         torch_threads=int(threads))
load_s = time.perf_counter() - t
rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
diarizer.diarize(warm)
warmup_s = time.perf_counter() - t
runs = []
for _ in range(int(repeats)):
    load = os.getloadavg()[0]
    t, c = time.perf_counter(), time.process_time()
    turns = diarizer.diarize(Path(wav))
    runs.append({"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                 "load_avg_1m_before": load})
print(json.dumps({
    "torch_threads": torch.get_num_threads(),
    "load_s": load_s,
    "warmup_s": warmup_s,
    "runs": runs,
    "rss_after_load_mb": rss_loaded,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "turns": [[x.start, x.end, x.speaker] for x in turns],
}))
"""


def run_step(wav: Path, cache: Path, step: float, threads: int, repeats: int) -> dict[str, Any]:
    """Measure one segmentation step in a fresh interpreter."""
    env = dict(os.environ, PYANNOTE_METRICS_ENABLED="false")
    args = [str(wav), str(cache), str(step), str(threads), str(repeats)]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"step {step} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="bench/diarize.json")
    parser.add_argument("--seconds", type=float, default=600, help="conversation length")
    parser.add_argument("--speakers", type=int, default=4, choices=(2, 3, 4))
    parser.add_argument(
        "--steps",
        default=f"0.1,{DEFAULT_SEGMENTATION_STEP}",
        help="segmentation steps to compare (default: pyannote's 0.1 and ours)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per step")
    parser.add_argument(
        "--cache-dir",
        default=os.environ.get("MODEL_CACHE_DIR", str(REPO / ".cache" / "models")),
    )
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-diarize-") as tmp:
        conv = long_conversation(Path(tmp) / "conversation.wav", args.seconds, args.speakers)
        print(f"{conv.duration:.0f} s, {len(conv.turns)} turns, {len(conv.speakers)} voices")
        for step in (float(s) for s in args.steps.split(",")):
            measured = run_step(conv.wav, Path(args.cache_dir), step, args.threads, args.repeats)
            hypothesis = [(float(s), float(e), str(k)) for s, e, k in measured.pop("turns")]
            score = diarization_error_rate(conv.turns, hypothesis)
            walls = [r["wall_s"] for r in measured["runs"]]
            row = {
                "segmentation_step": step,
                "audio_s": round(conv.duration, 1),
                "torch_threads": measured["torch_threads"],
                "load_s": round(measured["load_s"], 2),
                "warmup_30s_s": round(measured["warmup_s"], 2),
                "diarize_s": [round(w, 2) for w in walls],
                "cpu_s": [round(r["cpu_s"], 1) for r in measured["runs"]],
                "load_avg_1m": [round(r["load_avg_1m_before"], 2) for r in measured["runs"]],
                "rtf_best": round(min(walls) / conv.duration, 4),
                "rtf_median": round(statistics.median(walls) / conv.duration, 4),
                "der": round(score.der, 4),
                "missed": round(score.missed_rate, 4),
                "false_alarm": round(score.false_alarm_rate, 4),
                "confusion": round(score.confusion_rate, 4),
                "speakers_found": len({k for *_, k in hypothesis}),
                "rss_after_load_mb": round(measured["rss_after_load_mb"]),
                "peak_rss_mb": round(measured["peak_rss_mb"]),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "conversation": {"seconds": round(conv.duration, 1), "voices": len(conv.speakers)},
        "repeats": args.repeats,
        "runs": rows,
    }
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"\n{'step':>5} {'load_s':>7} {'best_s':>7} {'RTF':>6} {'RTF_med':>7} "
        f"{'DER':>6} {'conf':>6} {'spk':>4} {'peak_MB':>8}"
    )
    for r in rows:
        print(
            f"{r['segmentation_step']:>5} {r['load_s']:>7} {min(r['diarize_s']):>7} "
            f"{r['rtf_best']:>6} {r['rtf_median']:>7} {r['der']:>6} {r['confusion']:>6} "
            f"{r['speakers_found']:>4} {r['peak_rss_mb']:>8}"
        )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
