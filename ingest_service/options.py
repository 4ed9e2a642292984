"""Turning the client's form fields (or query parameters) into validated job options."""

from __future__ import annotations

import base64
import binascii
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec

from contracts import JobOptions, SpeakerHints
from contracts.messages import MAX_PROMPT_CHARS, MAX_TERM_CHARS, MAX_VOCABULARY_TERMS
from contracts.webhook_policy import IPNetwork
from contracts.webhook_signature import SECRET_PREFIX
from infra.webhook_hosts import first_refusal, resolve_async
from ingest_service.problems import InvalidOptions
from ingest_service.text import check_json_text, check_option, clean_name

#: Option fields a client may send besides the file.
OPTION_FIELDS = frozenset(
    {
        "language",
        "num_speakers",
        "min_speakers",
        "max_speakers",
        "webhook_url",
        "webhook_secret",
        "metadata",
        "delete_after",
        "vocabulary",
        "prompt",
    }
)
_INT_FIELDS = ("num_speakers", "min_speakers", "max_speakers")

#: Largest client metadata accepted, as JSON text.
MAX_METADATA_BYTES = 16 * 1024
#: Largest vocabulary field accepted, as text: room for every term JSON-escaped.
MAX_VOCABULARY_CHARS = 16 * 1024
#: Fields checked by their own rules instead of `check_option`'s (longer than it allows).
_LONG_FIELDS = frozenset({"metadata", "vocabulary"})

_SECRET_BYTES = 24


@dataclass(frozen=True)
class ValidatedOptions:
    options: JobOptions
    webhook_secret: str | None
    #: True when the service made the secret: it is returned once, in the 202 response.
    secret_generated: bool


def _check_webhook_url(url: str) -> None:
    message = f"webhook_url must be an absolute http(s) URL, got {url!r}"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number in 0-65535
    except ValueError:
        raise InvalidOptions(message, field="webhook_url") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidOptions(message, field="webhook_url")


def _check_webhook_secret(secret: str) -> None:
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not secret.startswith(SECRET_PREFIX) or len(key) < 16:
        raise InvalidOptions(
            "webhook_secret must be 'whsec_' followed by base64 of at least 16 random bytes",
            field="webhook_secret",
        )


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret: `whsec_` and base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def _speaker_counts(fields: Mapping[str, str]) -> dict[str, int]:
    counts = {}
    for name in _INT_FIELDS:
        value = fields.get(name, "").strip()
        if value:
            try:
                counts[name] = int(value)
            except ValueError:
                raise InvalidOptions(
                    f"{name} must be a whole number of speakers, got {value!r}", field=name
                ) from None
    return counts


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise InvalidOptions(f"{name} must be a number of seconds, got {value!r}", field=name)
    return seconds


def _metadata(raw: str) -> dict[str, Any]:
    if len(raw.encode()) > MAX_METADATA_BYTES:
        raise InvalidOptions(
            f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON", field="metadata"
        )
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidOptions("metadata must be a JSON object", field="metadata")
    check_json_text("metadata", value)
    return value


def _vocabulary(raw: str) -> list[str]:
    """A JSON list of strings or comma-separated terms: stripped, blanks and repeats dropped."""
    if len(raw) > MAX_VOCABULARY_CHARS:
        raise InvalidOptions(
            f"vocabulary must be at most {MAX_VOCABULARY_CHARS} characters", field="vocabulary"
        )
    items: list[Any] = raw.split(",")
    if raw.startswith(("[", "{")):  # JSON (an object is refused: it has no order of terms)
        try:
            items = msgspec.json.decode(raw, type=list[str])
        except msgspec.DecodeError:  # ValidationError too
            raise InvalidOptions(
                "vocabulary must be a JSON list of strings, or terms separated by commas",
                field="vocabulary",
            ) from None
    terms = list(dict.fromkeys(term.strip() for term in items if term.strip()))
    if len(terms) > MAX_VOCABULARY_TERMS:
        raise InvalidOptions(
            f"vocabulary has {len(terms)} terms; at most {MAX_VOCABULARY_TERMS} are accepted",
            field="vocabulary",
        )
    for term in terms:
        if len(term) > MAX_TERM_CHARS:
            raise InvalidOptions(
                f"vocabulary term {term[:24]!r}... is longer than {MAX_TERM_CHARS} characters",
                field="vocabulary",
            )
        check_option("vocabulary", term)
    return terms


def _transcriber_hints(fields: Mapping[str, str]) -> dict[str, Any]:
    """The vocabulary and prompt options, where given."""
    hints: dict[str, Any] = {}
    if vocabulary := fields.get("vocabulary", "").strip():
        hints["vocabulary"] = _vocabulary(vocabulary)
    if prompt := fields.get("prompt", "").strip():
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidOptions(
                f"prompt must be at most {MAX_PROMPT_CHARS} characters", field="prompt"
            )
        hints["prompt"] = prompt
    return hints


def parse_options(fields: Mapping[str, str]) -> ValidatedOptions:
    """Validate the option fields; raise `InvalidOptions` naming the first bad one."""
    unknown = sorted(clean_name(name, "?", 64) for name in set(fields) - OPTION_FIELDS)
    if unknown:
        raise InvalidOptions(
            f"unknown field(s) {', '.join(unknown)};"
            f" accepted: file, {', '.join(sorted(OPTION_FIELDS))}"
        )
    for name, value in fields.items():
        if name not in _LONG_FIELDS:
            check_option(name, value)
    raw: dict[str, Any] = _speaker_counts(fields)
    language = fields.get("language", "").strip().lower()
    if language and language != "auto":
        raw["language"] = language
    if metadata := fields.get("metadata", "").strip():
        raw["metadata"] = _metadata(metadata)
    if delete_after := fields.get("delete_after", "").strip():
        raw["delete_after"] = _seconds("delete_after", delete_after)
    raw.update(_transcriber_hints(fields))
    webhook_url = fields.get("webhook_url", "").strip()
    if webhook_url:
        _check_webhook_url(webhook_url)
        raw["webhook_url"] = webhook_url
    try:
        options = msgspec.convert(raw, JobOptions)
    except msgspec.ValidationError as exc:
        raise InvalidOptions(str(exc)) from None

    secret = fields.get("webhook_secret", "").strip() or None
    if secret is not None:
        if not webhook_url:
            raise InvalidOptions("webhook_secret needs a webhook_url", field="webhook_secret")
        _check_webhook_secret(secret)
        return ValidatedOptions(options, secret, secret_generated=False)
    if webhook_url:
        return ValidatedOptions(options, new_webhook_secret(), secret_generated=True)
    return ValidatedOptions(options, None, secret_generated=False)


def speaker_hints(body: bytes, current: JobOptions) -> JobOptions:
    """`current` with its speaker hints replaced by those of a JSON body."""
    try:
        hints = msgspec.json.decode(body or b"{}", type=SpeakerHints)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: first
        raise InvalidOptions(f"invalid speaker hints: {exc}") from None
    except msgspec.DecodeError:
        raise InvalidOptions("the body must be a JSON object") from None
    return current.with_speaker_hints(hints)


#: How long the upload waits for the webhook host to resolve; unresolved hosts pass here
#: and are checked again, after resolution, before every delivery.
RESOLVE_TIMEOUT_S = 2.0


async def check_destination(
    url: str, allowed: tuple[IPNetwork, ...], *, field: str, policy: str
) -> None:
    """Refuse (422) a URL whose host is, or resolves to, an internal address; `policy`
    says where such URLs may go instead. A host that does not resolve yet passes here:
    the workers check again, after resolution, before they connect."""
    try:
        addresses = await resolve_async(urlsplit(url).hostname or "", RESOLVE_TIMEOUT_S)
    except (OSError, TimeoutError):
        return
    refused = first_refusal(addresses, allowed)
    if refused is not None:
        address, reason = refused
        raise InvalidOptions(f"{field} points to {reason} ({address}); {policy}", field=field)


async def check_webhook_destination(url: str, allowed: tuple[IPNetwork, ...]) -> None:
    """Refuse (422) a webhook URL whose host is, or resolves to, an internal address."""
    await check_destination(
        url,
        allowed,
        field="webhook_url",
        policy="webhooks go to public addresses unless WEBHOOK_ALLOWED_NETWORKS allows it",
    )
