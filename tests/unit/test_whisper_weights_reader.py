"""Unit tests for the CTranslate2 model.bin reader and the name mapping to openai-whisper.

A small synthetic Whisper-shaped model.bin is written here byte by byte, following the
format in processing_service.transcribe.weights (binary version 6, little-endian).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

# numpy comes with the speech stack; without it there is nothing to convert.
np = pytest.importorskip("numpy")

from processing_service.transcribe.weights import (  # noqa: E402 - needs numpy
    convert_ct2_to_whisper,
    ct2_to_whisper_state_dict,
    load_whisper_checkpoint,
    parse_ct2_model,
    read_ct2_model,
    whisper_dims,
)

F32, I8, I16, I32, F16, BF16 = range(6)
_NUMPY = {F32: "<f4", I8: "<i1", I16: "<i2", I32: "<i4", F16: "<f2"}
DIMS = {
    "n_mels": 4,
    "n_audio_ctx": 6,
    "n_audio_state": 8,
    "n_audio_head": 2,
    "n_audio_layer": 1,
    "n_vocab": 11,
    "n_text_ctx": 5,
    "n_text_state": 8,
    "n_text_head": 2,
    "n_text_layer": 2,
}


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _encode(code: int, array: np.ndarray) -> bytes:
    if code == BF16:  # truncate float32 to its upper 16 bits
        return (np.asarray(array, "<f4").view("<u4") >> 16).astype("<u2").tobytes()
    return np.asarray(array).astype(_NUMPY[code]).tobytes()


def write_model_bin(
    variables: dict[str, tuple[int, np.ndarray]],
    aliases: dict[str, str] | None = None,
    version: int = 6,
) -> bytes:
    """Serialize variables (name -> (dtype code, array)) in the CT2 binary format."""
    out = [
        struct.pack("<I", version),
        _string("WhisperSpec"),
        struct.pack("<II", 3, len(variables)),
    ]
    for name, (code, array) in variables.items():
        raw = _encode(code, array)
        out += [_string(name), struct.pack("<B", array.ndim)]
        out += [
            struct.pack(f"<{array.ndim}I", *array.shape),
            struct.pack("<BI", code, len(raw)),
            raw,
        ]
    if aliases is not None:
        out.append(struct.pack("<I", len(aliases)))
        out += [_string(alias) + _string(target) for alias, target in aliases.items()]
    return b"".join(out)


def synthetic_whisper(seed: int = 0) -> dict[str, tuple[int, np.ndarray]]:
    """CT2 variables of a tiny Whisper (float16 weights, zero fused key biases)."""
    rng = np.random.default_rng(seed)
    state = DIMS["n_audio_state"]
    variables: dict[str, tuple[int, np.ndarray]] = {}

    def f16(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float16)

    def linear(prefix: str, rows: int, cols: int) -> None:
        variables[f"{prefix}/weight"] = (F16, f16(rows, cols))
        variables[f"{prefix}/bias"] = (F16, f16(rows))

    def norm(prefix: str) -> None:
        variables[f"{prefix}/gamma"] = (F16, f16(state))
        variables[f"{prefix}/beta"] = (F16, f16(state))

    for side, heads in (("encoder", DIMS["n_audio_head"]), ("decoder", DIMS["n_text_head"])):
        variables[f"{side}/num_heads"] = (I16, np.array(heads))
        norm(f"{side}/layer_norm")
        for i in range(DIMS["n_audio_layer" if side == "encoder" else "n_text_layer"]):
            layer = f"{side}/layer_{i}"
            norm(f"{layer}/self_attention/layer_norm")
            linear(f"{layer}/self_attention/linear_0", 3 * state, state)
            variables[f"{layer}/self_attention/linear_0/bias"][1][state : 2 * state] = 0
            linear(f"{layer}/self_attention/linear_1", state, state)
            norm(f"{layer}/ffn/layer_norm")
            linear(f"{layer}/ffn/linear_0", 4 * state, state)
            linear(f"{layer}/ffn/linear_1", state, 4 * state)
            if side == "decoder":
                norm(f"{layer}/attention/layer_norm")
                linear(f"{layer}/attention/linear_0", state, state)
                linear(f"{layer}/attention/linear_1", 2 * state, state)
                variables[f"{layer}/attention/linear_1/bias"][1][:state] = 0
                linear(f"{layer}/attention/linear_2", state, state)
    variables["encoder/conv1/weight"] = (F16, f16(state, DIMS["n_mels"], 3))
    variables["encoder/conv1/bias"] = (F16, f16(state))
    variables["encoder/conv2/weight"] = (F16, f16(state, state, 3))
    variables["encoder/conv2/bias"] = (F16, f16(state))
    variables["encoder/position_encodings/encodings"] = (F16, f16(DIMS["n_audio_ctx"], state))
    variables["decoder/embeddings/weight"] = (F16, f16(DIMS["n_vocab"], state))
    variables["decoder/position_encodings/encodings"] = (F16, f16(DIMS["n_text_ctx"], state))
    variables["decoder/pre_norm"] = (I8, np.array(1))
    return variables


def test_round_trip_of_all_dtypes_and_aliases(tmp_path: Path) -> None:
    bf16_values = np.array([1.0, -2.5, 0.15625, 2.0**100], dtype=np.float32)  # exact in bf16
    variables: dict[str, tuple[int, np.ndarray]] = {
        "a/float16": (F16, np.array([[0.5, -1.25, 65504.0], [1e-4, 0.0, -3.0]], np.float16)),
        "a/float32": (F32, np.array([1.5, -2.0e-7], np.float32)),
        "a/int8": (I8, np.array([-128, 0, 127], np.int8)),
        "a/int16": (I16, np.array(7)),
        "a/int32": (I32, np.arange(6).reshape(2, 3)),
        "a/bfloat16": (BF16, bf16_values),
        "a/empty": (F32, np.zeros((0, 3), np.float32)),
    }
    path = tmp_path / "model.bin"
    path.write_bytes(write_model_bin(variables, {"a/alias": "a/float16"}))

    model = read_ct2_model(path)

    assert (model.spec, model.revision) == ("WhisperSpec", 3)
    assert list(model.variables) == list(variables)
    assert model.aliases == {"a/alias": "a/float16"}
    for name, (code, expected) in variables.items():
        got = model.variables[name]
        assert got.shape == expected.shape, name
        if code in (F16, BF16):
            assert got.dtype == np.float32, name
        np.testing.assert_array_equal(got, np.asarray(expected).astype(got.dtype), err_msg=name)
    assert model.variables["a/int8"].dtype == np.int8
    assert model.scalar("a/int16") == 7
    with pytest.raises(ValueError, match="not a scalar"):
        model.scalar("a/int32")


def test_aliases_are_optional() -> None:
    model = parse_ct2_model(write_model_bin({"x": (F32, np.ones(2, np.float32))}))
    assert model.aliases == {}


_ONE_VAR = {"x": (F32, np.ones(2, np.float32))}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(write_model_bin(_ONE_VAR, version=5), "version 5", id="version"),
        pytest.param(write_model_bin(_ONE_VAR)[:-4], "truncated", id="truncated"),
        pytest.param(write_model_bin(_ONE_VAR, {}) + b"\0", "trailing", id="trailing"),
        pytest.param(  # dtype code 0 -> 9 (the byte before the uint32 size 8)
            write_model_bin(_ONE_VAR).replace(b"\0\x08\0", b"\x09\x08\0"), "dtype", id="dtype"
        ),
    ],
)
def test_malformed_files_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ct2_model(data)


def test_name_mapping_and_fused_splits() -> None:
    variables = synthetic_whisper()
    model = parse_ct2_model(write_model_bin(variables, {"decoder/projection/weight": "x"}))
    sd = ct2_to_whisper_state_dict(model)
    state = DIMS["n_audio_state"]

    assert whisper_dims(model) == DIMS
    qkv = variables["encoder/layer_0/self_attention/linear_0/weight"][1].astype(np.float32)
    np.testing.assert_array_equal(sd["encoder.blocks.0.attn.query.weight"], qkv[:state])
    np.testing.assert_array_equal(sd["encoder.blocks.0.attn.key.weight"], qkv[state : 2 * state])
    np.testing.assert_array_equal(sd["encoder.blocks.0.attn.value.weight"], qkv[2 * state :])
    kv_bias = variables["decoder/layer_1/attention/linear_1/bias"][1].astype(np.float32)
    np.testing.assert_array_equal(sd["decoder.blocks.1.cross_attn.value.bias"], kv_bias[state:])
    assert "decoder.blocks.1.cross_attn.key.bias" not in sd
    assert "encoder.blocks.0.attn.key.bias" not in sd
    gamma = variables["decoder/layer_norm/gamma"][1].astype(np.float32)
    np.testing.assert_array_equal(sd["decoder.ln.weight"], gamma)
    pos = variables["encoder/position_encodings/encodings"][1].astype(np.float32)
    np.testing.assert_array_equal(sd["encoder.positional_embedding"], pos)
    assert sd["decoder.blocks.0.mlp.2.weight"].shape == (state, 4 * state)
    # 11 top-level tensors, 15 per encoder layer, 24 per decoder layer (+ cross-attention).
    assert len(sd) == 11 + 15 * DIMS["n_audio_layer"] + 24 * DIMS["n_text_layer"]


@pytest.mark.parametrize(
    "extra", ["decoder/layer_0/unexpected/weight", "encoder/layer_0/ffn/linear_0/weight_scale"]
)
def test_unmapped_variables_are_an_error(extra: str) -> None:
    variables = synthetic_whisper()
    variables[extra] = (F16, np.ones((2, 2), np.float16))
    with pytest.raises(ValueError, match="unmapped"):
        ct2_to_whisper_state_dict(parse_ct2_model(write_model_bin(variables)))


def test_quantized_weights_are_rejected() -> None:
    variables = synthetic_whisper()
    weight = variables["encoder/layer_0/ffn/linear_0/weight"][1]
    variables["encoder/layer_0/ffn/linear_0/weight"] = (I8, weight.astype(np.int8))
    with pytest.raises(ValueError, match="quantized"):
        ct2_to_whisper_state_dict(parse_ct2_model(write_model_bin(variables)))


def test_converted_checkpoint_loads_strictly_with_alignment_heads(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("whisper")
    output = convert_ct2_to_whisper(
        write_model_bin(synthetic_whisper()),
        {"alignment_heads": [[0, 1], [1, 0]]},
        tmp_path / "whisper" / "synthetic.pt",
    )
    checkpoint = torch.load(output, map_location="cpu", weights_only=True)
    assert checkpoint["dims"] == DIMS

    model = load_whisper_checkpoint(output)  # whisper.load_model: strict load_state_dict

    expected = [[0, 1], [1, 0]]
    assert model.alignment_heads.to_dense().nonzero().tolist() == expected
    embedding = synthetic_whisper()["decoder/embeddings/weight"][1].astype(np.float32)
    np.testing.assert_array_equal(model.decoder.token_embedding.weight.detach().numpy(), embedding)
    assert not list(tmp_path.glob("whisper/*.tmp"))
