"""CAM++ speaker embeddings (3D-Speaker's ``campplus_cn_en_common.pt``) as a pyannote ``Model``.

The network follows the CAM++ paper (Wang et al., Interspeech 2023) and the layout of the
released checkpoint, so that ``load_state_dict(..., strict=True)`` accepts it unchanged:

* ``head`` (FCM): a 2-D conv front end over the 80 x T fbank "image" with two residual
  stages that halve the frequency axis, then a conv halving it again: 32 maps x 10 bands
  become 320 channels per frame;
* ``xvector``: a strided TDNN (T/2), three densely connected blocks of CAM layers
  (12, 24, 16 layers; growth 32; dilation 1, 2, 2), each followed by a 1x1 transition
  that halves the channels, a BN-ReLU, statistics pooling and a 1x1 "dense" projection
  to 192 dimensions with an affine-free batch norm.

A CAM layer ("context-aware masking") multiplies the output of a local dilated conv by a
sigmoid gate computed from the sequence mean plus a 100-frame segment mean, i.e. from
context around each frame.

``CamPlusPlusEmbedding`` wraps the network for pyannote.audio: 80-bin kaldi fbank (25 ms
/ 10 ms, povey window, mean-normalised per chunk), the trunk, then statistics pooling
weighted by pyannote's per-frame speaker weights (interpolated to the trunk's frame rate),
as pyannote's own embedding models do. pyannote asks for one embedding per (chunk, local
speaker) with the same chunk repeated for each speaker, so the trunk runs once per
distinct waveform of a batch and only the pooling runs per speaker.

This module needs torch, torchaudio and pyannote.audio at import time; the rest of the
service imports it lazily (``processing_service.diarize.diarizer``).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from pyannote.audio import Model
from torch import Tensor, nn
from torchaudio.compliance import kaldi

EMBEDDING_DIM = 192
NUM_MEL_BINS = 80
SAMPLE_RATE = 16000
_SEGMENT_FRAMES = 100  # CAM layers' segment-level context, in trunk frames
#: Fewest fbank frames (10 ms) worth embedding on their own.
MIN_FRAMES = 20


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict([("batchnorm", nn.BatchNorm1d(channels)), ("relu", nn.ReLU(inplace=True))])
    )


class _ResidualBlock2d(nn.Module):
    """Two 3x3 convs with a skip connection; ``stride`` subsamples frequency only."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels, channels, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


class _FrontEnd(nn.Module):
    """FCM: (batch, mels, frames) -> (batch, 32 * mels / 8, frames)."""

    def __init__(self, feat_dim: int = NUM_MEL_BINS, maps: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, maps, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(maps)
        self.layer1 = nn.Sequential(_ResidualBlock2d(maps, 2), _ResidualBlock2d(maps, 1))
        self.layer2 = nn.Sequential(_ResidualBlock2d(maps, 2), _ResidualBlock2d(maps, 1))
        self.conv2 = nn.Conv2d(maps, maps, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(maps)
        self.out_channels = maps * (feat_dim // 8)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        x = F.relu(self.bn2(self.conv2(self.layer2(self.layer1(x)))))
        return x.flatten(1, 2)  # (batch, maps * bands, frames)


class _Tdnn(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.nonlinear = _bn_relu(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.nonlinear(self.linear(x))  # type: ignore[no-any-return]


class _ContextAwareMask(nn.Module):
    """Local conv output gated by a sigmoid of (sequence mean + segment mean) context."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int) -> None:
        super().__init__()
        pad = (kernel - 1) // 2 * dilation
        self.linear_local = nn.Conv1d(
            c_in, c_out, kernel, padding=pad, dilation=dilation, bias=False
        )
        self.linear1 = nn.Conv1d(c_in, c_in // 2, 1)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Conv1d(c_in // 2, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        frames = x.shape[-1]
        segments = F.avg_pool1d(x, _SEGMENT_FRAMES, _SEGMENT_FRAMES, ceil_mode=True)
        segment_context = segments.repeat_interleave(_SEGMENT_FRAMES, dim=-1)[..., :frames]
        context = x.mean(-1, keepdim=True) + segment_context
        gate = torch.sigmoid(self.linear2(self.relu(self.linear1(context))))
        out: Tensor = self.linear_local(x) * gate
        return out


class _DenseLayer(nn.Module):
    """BN-ReLU, 1x1 bottleneck, BN-ReLU, CAM layer: adds ``growth`` channels."""

    def __init__(self, c_in: int, growth: int, bottleneck: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = _bn_relu(c_in)
        self.linear1 = nn.Conv1d(c_in, bottleneck, 1, bias=False)
        self.nonlinear2 = _bn_relu(bottleneck)
        self.cam_layer = _ContextAwareMask(bottleneck, growth, kernel, dilation)

    def forward(self, x: Tensor) -> Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))  # type: ignore[no-any-return]


class _DenseBlock(nn.ModuleDict):
    """Densely connected CAM layers: each sees the concatenation of all earlier outputs."""

    def __init__(self, layers: int, c_in: int, growth: int, kernel: int, dilation: int) -> None:
        super().__init__(
            {
                f"tdnnd{i + 1}": _DenseLayer(
                    c_in + i * growth, growth, 4 * growth, kernel, dilation
                )
                for i in range(layers)
            }
        )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.values():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _Transition(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.nonlinear = _bn_relu(c_in)
        self.linear = nn.Conv1d(c_in, c_out, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.nonlinear(x))  # type: ignore[no-any-return]


class _Projection(nn.Module):
    """Pooled statistics -> embedding: 1x1 conv and an affine-free batch norm."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(c_in, c_out, 1, bias=False)
        self.nonlinear = nn.Sequential(
            OrderedDict([("batchnorm", nn.BatchNorm1d(c_out, affine=False))])
        )

    def forward(self, stats: Tensor) -> Tensor:
        return self.nonlinear(self.linear(stats.unsqueeze(-1)).squeeze(-1))  # type: ignore[no-any-return]


def weighted_stats(frames: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean and standard deviation over time, optionally weighted per frame.

    ``frames`` is (batch, channels, time); ``weights`` (batch, time') is resampled to
    ``time`` (nearest). Unweighted: plain mean and unbiased std. Weighted: the weighted
    mean and the reliability-weighted unbiased std (as pyannote's StatsPool).
    """
    if weights is None:
        return torch.cat([frames.mean(-1), frames.std(-1, correction=1)], dim=-1)
    if weights.shape[-1] != frames.shape[-1]:
        weights = F.interpolate(weights[:, None], size=frames.shape[-1], mode="nearest")[:, 0]
    w = weights[:, None, :]
    v1 = w.sum(-1) + 1e-8
    mean = (frames * w).sum(-1) / v1
    v2 = (w * w).sum(-1)
    var = ((frames - mean[..., None]) ** 2 * w).sum(-1) / (v1 - v2 / v1 + 1e-8)
    return torch.cat([mean, var.clamp_min(0).sqrt()], dim=-1)


class CamPlusPlus(nn.Module):
    """The CAM++ network: (batch, frames, 80) fbank -> (batch, 192) embeddings."""

    def __init__(self, feat_dim: int = NUM_MEL_BINS, embedding_dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.head = _FrontEnd(feat_dim)
        channels, growth = 128, 32
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["tdnn"] = _Tdnn(self.head.out_channels, channels, kernel=5, stride=2)
        for i, (depth, dilation) in enumerate(((12, 1), (24, 2), (16, 2)), start=1):
            layers[f"block{i}"] = _DenseBlock(depth, channels, growth, 3, dilation)
            channels += depth * growth
            layers[f"transit{i}"] = _Transition(channels, channels // 2)
            channels //= 2
        layers["out_nonlinear"] = _bn_relu(channels)
        self.xvector = nn.Sequential(layers)
        # Registered after the trunk; called explicitly so that pooling can be weighted.
        self.xvector.add_module("dense", _Projection(2 * channels, embedding_dim))
        self.trunk_channels = channels

    def frames(self, fbank: Tensor) -> Tensor:
        """Frame-level features (batch, 512, ceil(frames / 2)) before pooling."""
        x = self.head(fbank.transpose(1, 2))
        for name, module in self.xvector.named_children():
            if name != "dense":
                x = module(x)
        out: Tensor = x
        return out

    def embed(self, frames: Tensor, weights: Tensor | None = None) -> Tensor:
        """Pool frame features (optionally weighted) and project to the embedding."""
        dense = self.xvector.dense
        assert isinstance(dense, nn.Module)
        return dense(weighted_stats(frames, weights))  # type: ignore[no-any-return]

    def forward(self, fbank: Tensor) -> Tensor:
        return self.embed(self.frames(fbank))


def kaldi_fbank(waveform: Tensor) -> Tensor:
    """(samples,) float waveform in [-1, 1] -> (frames, 80) log-mel fbank (25 ms / 10 ms)."""
    features: Tensor = kaldi.fbank(
        waveform[None],
        num_mel_bins=NUM_MEL_BINS,
        sample_frequency=SAMPLE_RATE,
        dither=0.0,
        window_type="povey",
    )
    return features


def _normalise(feats: Tensor) -> Tensor:
    """Per-utterance mean normalisation over frames, as in CAM++ training."""
    return feats - feats.mean(dim=0, keepdim=True)


class CamPlusPlusEmbedding(Model):
    """pyannote.audio embedding ``Model`` around CAM++ (see the module docstring)."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, num_channels: int = 1) -> None:
        super().__init__(sample_rate=sample_rate, num_channels=num_channels)
        self.campplus = CamPlusPlus()

    @classmethod
    def from_checkpoint(cls, path: Path) -> CamPlusPlusEmbedding:
        """Build the model and load 3D-Speaker's state dict from ``path`` strictly."""
        model = cls()
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.campplus.load_state_dict(state, strict=True)
        return model.eval()

    @property
    def dimension(self) -> int:
        """Embedding dimension (192)."""
        return EMBEDDING_DIM

    def forward(self, waveforms: Tensor, weights: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """(batch, 1, samples) waveforms [+ (batch, frames) weights] -> (batch, 192).

        With weights, each row's embedding is computed from the fbank frames its weights
        cover only (resampled to 10 ms, nearest), pooled with those weights: CAM++'s
        context gates average over the whole input, so the other speakers of a chunk
        must not be in it, and silence costs nothing. A row covering fewer than
        ``MIN_FRAMES`` frames is widened around them. A row with no active frame (a
        local speaker silent in its chunk, which pyannote discards) is not computed:
        it gets a copy of another row's embedding. Rows repeating the previous row's
        waveform (pyannote sends each chunk once per local speaker) reuse its fbank.
        """
        flat = waveforms[:, 0]
        if weights is None:
            return torch.stack([self.campplus(_normalise(kaldi_fbank(w))[None])[0] for w in flat])
        feats: Tensor | None = None
        rows: dict[int, Tensor] = {}
        for i in range(flat.shape[0]):
            if feats is None or not torch.equal(flat[i], flat[i - 1]):
                feats = kaldi_fbank(flat[i])
            count = feats.shape[0]
            w = F.interpolate(weights[i][None, None], size=count, mode="nearest")[0, 0]
            active = torch.nonzero(w > 0)[:, 0]
            if active.numel() == 0:
                continue
            if active.numel() < MIN_FRAMES:
                first = int(active[0].clamp(max=max(0, count - MIN_FRAMES)))
                active = torch.arange(first, min(count, first + MIN_FRAMES))
            frames = self.campplus.frames(_normalise(feats[active])[None])
            rows[i] = self.campplus.embed(frames, w[active][None])[0]
        fallback = next(iter(rows.values()), None)
        if fallback is None:
            fallback = torch.full((EMBEDDING_DIM,), EMBEDDING_DIM**-0.5)
        return torch.stack([rows.get(i, fallback) for i in range(flat.shape[0])])
