"""Diarization benchmark: real-time factor, DER and peak memory on a generated conversation.

Generates a multi-speaker espeak-ng conversation of about 10 minutes with known turns,
then, for each segmentation step (default: 0.1, pyannote's own, and ours, 0.5), runs the
offline pipeline in a fresh process: model loading is timed apart from diarization, and
the process's peak RSS is read from the kernel. The steps run one after the other on the
same audio, so their figures compare side by side. Results go to bench/diarize.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.der import diarization_error_rate  # noqa: E402 - the repo root is on the path now
from tests.diarization_audio import long_conversation  # noqa: E402

CHILD = """
import json, resource, sys, time
from pathlib import Path
from processing_service.diarization import load_diarizer
wav, cache, step, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
t = time.perf_counter()
diarizer = load_diarizer("offline", Path(cache), segmentation_step=step, torch_threads=threads)
load_s = time.perf_counter() - t
t = time.perf_counter()
turns = diarizer.diarize(Path(wav))
run_s = time.perf_counter() - t
print(json.dumps({
    "load_s": load_s,
    "diarize_s": run_s,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "turns": [[x.start, x.end, x.speaker] for x in turns],
}))
"""


def run_step(wav: Path, cache: Path, step: float, threads: int) -> dict[str, Any]:
    env = dict(os.environ, PYANNOTE_METRICS_ENABLED="false")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(wav), str(cache), str(step), str(threads)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="bench/diarize.json")
    parser.add_argument("--seconds", type=float, default=600, help="conversation length")
    parser.add_argument("--speakers", type=int, default=3)
    parser.add_argument("--steps", default="0.1,0.5", help="segmentation steps to compare")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--cache-dir", default=str(REPO / ".cache" / "models"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-diarize-") as tmp:
        conv = long_conversation(Path(tmp) / "conversation.wav", args.seconds, args.speakers)
        reference = [(t.start, t.end, t.speaker) for t in conv.turns]
        rows = []
        for step in (float(s) for s in args.steps.split(",")):
            measured = run_step(conv.wav, Path(args.cache_dir), step, args.threads)
            hypothesis = [tuple(t) for t in measured.pop("turns")]
            score = diarization_error_rate(reference, hypothesis)  # type: ignore[arg-type]
            row = {
                "segmentation_step": step,
                "audio_s": round(conv.duration, 1),
                "load_s": round(measured["load_s"], 2),
                "diarize_s": round(measured["diarize_s"], 2),
                "real_time_factor": round(measured["diarize_s"] / conv.duration, 3),
                "der": round(score.der, 4),
                "speakers_found": len({t[2] for t in hypothesis}),
                "peak_rss_mb": round(measured["peak_rss_mb"]),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    results = {
        "machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine()},
        "speakers": args.speakers,
        "torch_threads": args.threads,
        "runs": rows,
    }
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("\nstep  audio_s  diarize_s   RTF    DER  speakers  peak_MB")
    for r in rows:
        print(
            f"{r['segmentation_step']:<5} {r['audio_s']:>7} {r['diarize_s']:>10} "
            f"{r['real_time_factor']:>5} {r['der']:>6} {r['speakers_found']:>9}"
            f" {r['peak_rss_mb']:>8}"
        )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
