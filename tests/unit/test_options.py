from __future__ import annotations

import asyncio
import base64
import ipaddress

import msgspec
import pytest

from contracts import JobOptions
from ingest_service.options import (
    check_webhook_destination,
    new_webhook_secret,
    parse_options,
    speaker_hints,
)
from ingest_service.problems import InvalidOptions


def test_fields_become_typed_options() -> None:
    result = parse_options(
        {
            "language": "EN",
            "num_speakers": " 3 ",
            "metadata": '{"ticket": 42}',
            "webhook_url": "https://hooks.example.org/x",
        }
    )
    assert result.options.language == "en"
    assert result.options.num_speakers == 3
    assert result.options.metadata == {"ticket": 42}
    assert result.secret_generated
    assert result.webhook_secret is not None


def test_auto_language_and_empty_fields_mean_unset() -> None:
    result = parse_options({"language": "auto", "num_speakers": "", "metadata": ""})
    assert result.options.language is None
    assert result.options.num_speakers is None
    assert result.webhook_secret is None


def test_a_client_secret_is_kept_and_checked() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    kept = parse_options({"webhook_url": "http://h.example/x", "webhook_secret": secret})
    assert kept.webhook_secret == secret
    assert not kept.secret_generated
    with pytest.raises(InvalidOptions, match="needs a webhook_url"):
        parse_options({"webhook_secret": secret})
    short = "whsec_" + base64.b64encode(b"short").decode()
    with pytest.raises(InvalidOptions, match="16 random bytes"):
        parse_options({"webhook_url": "http://h.example/x", "webhook_secret": short})


@pytest.mark.parametrize(
    "fields",
    [
        {"webhook_url": "javascript:alert(1)"},
        {"webhook_url": "http:///no-host"},
        {"metadata": "null"},
        {"metadata": "{" + '"k": "' + "x" * 20_000 + '"}'},
        {"max_speakers": "1.5"},
    ],
)
def test_invalid_fields_are_refused(fields: dict[str, str]) -> None:
    with pytest.raises(InvalidOptions):
        parse_options(fields)


def test_speaker_hints_replace_all_three_and_keep_the_rest() -> None:
    current = JobOptions(language="en", num_speakers=3, metadata={"k": 1})
    updated = speaker_hints(b'{"min_speakers": 2, "max_speakers": 4}', current)
    assert updated == JobOptions(language="en", min_speakers=2, max_speakers=4, metadata={"k": 1})
    assert speaker_hints(b"", current) == JobOptions(language="en", metadata={"k": 1})
    with pytest.raises(InvalidOptions, match="invalid speaker hints: min_speakers must not"):
        speaker_hints(b'{"min_speakers": 5, "max_speakers": 2}', current)
    with pytest.raises(InvalidOptions, match="must be a JSON object"):
        speaker_hints(b"two", current)


def test_webhook_destinations_are_checked_against_the_ssrf_policy() -> None:
    loopback = (ipaddress.ip_network("127.0.0.0/8"),)
    with pytest.raises(InvalidOptions, match=r"loopback.*\(127\.0\.0\.1\).*WEBHOOK_ALLOWED"):
        asyncio.run(check_webhook_destination("http://127.0.0.1:9/h", ()))
    with pytest.raises(InvalidOptions, match="::1"):
        asyncio.run(check_webhook_destination("http://[::1]/h", ()))
    asyncio.run(check_webhook_destination("http://127.0.0.1:9/h", loopback))
    # A host that does not resolve (yet) passes here; notify checks again before sending.
    asyncio.run(check_webhook_destination("https://no-such-host.invalid/h", ()))


def test_vocabulary_comes_as_a_json_list_or_comma_separated() -> None:
    as_json = parse_options({"vocabulary": '["Quorvexa", " Zyntrelle ", "Smith, Jones & Co"]'})
    assert as_json.options.vocabulary == ["Quorvexa", "Zyntrelle", "Smith, Jones & Co"]
    as_text = parse_options({"vocabulary": "Quorvexa, Zyntrelle,,Quorvexa , "})
    assert as_text.options.vocabulary == ["Quorvexa", "Zyntrelle"]  # blanks, repeats dropped
    assert parse_options({"vocabulary": "  "}).options.vocabulary == []
    assert parse_options({"vocabulary": "[]"}).options.vocabulary == []
    # The longest accepted: 100 terms of 64 characters (longer than other options may be).
    full = [f"{i:02d}" + "x" * 62 for i in range(100)]
    assert (
        parse_options({"vocabulary": msgspec.json.encode(full).decode()}).options.vocabulary == full
    )


def test_the_prompt_is_kept_stripped_and_blank_means_none() -> None:
    prompt = "A weekly product call about the Quorvexa launch."
    assert parse_options({"prompt": f"  {prompt} "}).options.prompt == prompt
    assert parse_options({"prompt": " "}).options.prompt is None
    assert parse_options({}).options == JobOptions()
    assert parse_options({"prompt": "x" * 1000}).options.prompt == "x" * 1000


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"vocabulary": "[1, 2]"}, "JSON list of strings"),
        ({"vocabulary": '["open'}, "JSON list of strings"),
        ({"vocabulary": '{"a": 1}'}, "JSON list of strings"),
        ({"vocabulary": ",".join(f"t{i}" for i in range(101))}, "101 terms; at most 100"),
        ({"vocabulary": "ok, " + "y" * 65}, "longer than 64 characters"),
        ({"vocabulary": '["bell\\u0007"]'}, "control character"),
        ({"vocabulary": '["nul\\u0000"]'}, "control character"),
        ({"vocabulary": "a\tb"}, "control character"),
        ({"vocabulary": "[" + ",".join(['"z"'] * 5000) + "]"}, "at most 16384 characters"),
        ({"prompt": "x" * 1001}, "prompt must be at most 1000 characters"),
        ({"prompt": "two\nlines"}, "control character"),
    ],
)
def test_invalid_vocabulary_or_prompt_is_refused_naming_the_field(
    fields: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidOptions, match=message) as caught:
        parse_options(fields)
    assert caught.value.status == 422
    assert caught.value.extensions["field"] == next(iter(fields))


def test_vocabulary_and_prompt_bounds_hold_in_the_contract() -> None:
    decode = msgspec.json.Decoder(JobOptions).decode
    assert decode(b'{"vocabulary": ["A"], "prompt": "p"}') == JobOptions(
        vocabulary=["A"], prompt="p"
    )
    for bad in (
        b'{"vocabulary": [""]}',
        b'{"vocabulary": ["' + b"x" * 65 + b'"]}',
        b'{"vocabulary": ["a\\n"]}',
        b'{"vocabulary": [' + b",".join([b'"a"'] * 101) + b"]}",
        b'{"prompt": "' + b"x" * 1001 + b'"}',
    ):
        with pytest.raises(msgspec.ValidationError):
            decode(bad)
    with pytest.raises(ValueError, match="vocabulary term"):
        JobOptions(vocabulary=["tab\there"])
    with pytest.raises(ValueError, match="at most 100 terms"):
        JobOptions(vocabulary=["a"] * 101)
    with pytest.raises(ValueError, match="prompt"):
        JobOptions(prompt="x" * 1001)
