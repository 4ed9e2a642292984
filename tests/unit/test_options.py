from __future__ import annotations

import asyncio
import base64
import ipaddress

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
