from __future__ import annotations

import base64

import pytest

from ingest_service.options import new_webhook_secret, parse_options
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
