"""Diarization accuracy where the thresholds were not tuned: real meetings, unseen voices.

Both tests run the production ``Diarizer`` with the default settings; make bench-accuracy
measures the same on more recordings (and the previous clustering beside the current).

* Real speech: the nine 30 s AMI excerpts in ``../shared/data/ami-excerpts`` (far-field
  meetings, 1-4 people, overlap), scored over their UEM range with overlap and no collar.
* Unseen voices: generated meetings of 4 and 6 espeak-ng voices from
  ``HELD_OUT_VOICES``, a set never used to choose a setting, with other sentences, turn
  lengths and pauses than the tuned test clips. pyannote's clustering default (centroid
  linkage at 0.7, min_cluster_size 12), the setting before, merged look-alike voices here:
  speaker count exact on 1 of these 4 meetings, turn attribution 0.72 on average.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("pyannote.audio")

from processing_service.diarize.diarizer import Diarizer, load_diarizer
from scripts.bench_accuracy import AMI_DIR, ami_recordings, clip
from tests.support.der import diarization_error_rate, turn_attribution
from tests.support.diarization_audio import HELD_OUT_VOICES, meeting
from tests.support.models import MODEL_CACHE_DIR, provision

pytestmark = pytest.mark.models

# Mean DER over the nine excerpts: 0.370 now, 0.376 with the clustering before (its
# 3-speaker split of trn08 costs 0.055 there). What bounds it is the segmentation model,
# not the clustering: with the true speakers given to every (chunk, speaker) embedding
# (pyannote's OracleClustering) the mean is still 0.354, 0.33 of it missed speech (quiet
# far-field talk and overlap the segmentation does not detect). The do-nothing baseline
# (all reference speech as one speaker, a perfect voice detector) scores 0.31.
AMI_MAX_MEAN_DER = 0.373


@pytest.fixture(scope="module")
def diarizer() -> Diarizer:
    provision("processing_service.diarize.weights")
    return load_diarizer("offline", MODEL_CACHE_DIR)


def test_real_meeting_speech_der_bound(diarizer: Diarizer, tmp_path: Path) -> None:
    if not (AMI_DIR / "train.rttm").is_file():
        pytest.skip(f"no AMI excerpts in {AMI_DIR}")
    scores = {}
    for rec in ami_recordings(AMI_DIR, tmp_path):
        turns = [(t.start, t.end, t.speaker) for t in diarizer.diarize(rec.wav)]
        result = diarization_error_rate(clip(rec.turns, rec.scored_s), clip(turns, rec.scored_s))
        assert result.false_alarm_rate < 0.1, (rec.name, result)
        scores[rec.name] = result.der
    assert len(scores) == 9
    mean = sum(scores.values()) / len(scores)
    assert mean <= AMI_MAX_MEAN_DER, scores


@pytest.mark.parametrize("voices", [4, 6])
def test_unseen_voices_speaker_count_and_attribution(
    diarizer: Diarizer, tmp_path: Path, voices: int
) -> None:
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make system-deps)")
    found, attribution = [], []
    for seed in (0, 1):
        conv = meeting(tmp_path / f"{seed}.wav", HELD_OUT_VOICES, voices, seed=seed + 100 * voices)
        turns = diarizer.diarize(conv.wav)
        found.append(len({t.speaker for t in turns}))
        attribution.append(turn_attribution(conv.turns, turns))
    # Measured: 4 voices 4 and 4 found, attribution 1.00 and 0.90; 6 voices 5 and 6
    # found, 0.88 and 0.84 (before: 4 and 2 found, 1.00 and 0.60; 4 and 2, 0.78 and 0.48).
    assert voices in found, found
    assert all(abs(n - voices) <= 1 for n in found), found
    assert sum(attribution) / 2 >= 0.85, attribution
