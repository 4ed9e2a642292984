"""`audio-client`: submit, follow and steer jobs from a shell; check a webhook.

Exit status: 0 done; 1 the job failed or was cancelled, or a webhook does not verify;
2 a usage error; 3 the API refused the request or could not be reached.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import msgspec

from audio_client import config
from audio_client.client import RESULT_FORMATS, Client, JobEvent
from audio_client.errors import ClientError, JobEnded
from contracts import JobOptions, JobStatus
from contracts.webhook_signature import DEFAULT_TOLERANCE_S, InvalidSignature, verify

EXIT_OK, EXIT_JOB, EXIT_USAGE, EXIT_API = 0, 1, 2, 3
#: Width of the progress bar, in characters.
BAR_WIDTH = 30


def _header(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"a header is 'Name: value', got {raw!r}")
    return name.strip(), value.strip()


def _json_object(raw: str) -> dict[str, object]:
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise argparse.ArgumentTypeError("not JSON") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audio-client",
        description="Submit audio to the audio pipeline, follow and steer its jobs.",
    )
    parser.add_argument(
        "--url",
        help=f"the API's base URL (default ${config.URL_VARIABLE}, else {config.DEFAULT_URL})",
    )
    parser.add_argument("--api-key", help=f"the API key (default ${config.API_KEY_VARIABLE})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    submit = commands.add_parser("submit", help="upload a file or submit an audio URL")
    submit.add_argument("audio", help="a file to upload, or an http(s) URL the workers fetch")
    submit.add_argument("--language", help="ISO code such as en, or auto")
    submit.add_argument("--num-speakers", type=int)
    submit.add_argument("--min-speakers", type=int)
    submit.add_argument("--max-speakers", type=int)
    submit.add_argument("--webhook-url")
    submit.add_argument("--webhook-secret", help="whsec_… (generated and printed when omitted)")
    submit.add_argument("--metadata", type=_json_object, help="a JSON object echoed back")
    submit.add_argument("--delete-after", type=int, metavar="SECONDS")
    submit.add_argument(
        "--vocabulary",
        action="append",
        default=[],
        metavar="TERM",
        help="a term Whisper should spell as given (repeat, or separate with commas)",
    )
    submit.add_argument("--prompt", help="context that leads into the recording")
    submit.add_argument(
        "--source-header",
        action="append",
        type=_header,
        default=[],
        metavar="'NAME: VALUE'",
        help="a header sent when fetching an audio URL (repeat)",
    )
    submit.add_argument("--idempotency-key", help="default: a new one, kept across retries")
    submit.add_argument("--wait", action="store_true", help="follow the job, then write its result")
    submit.add_argument("--timeout", type=float, metavar="SECONDS", help="give up waiting after")
    _output_arguments(submit)

    status = commands.add_parser("status", help="a job's status, stages and progress (JSON)")
    status.add_argument("job_id")

    result = commands.add_parser("result", help="a completed job's result")
    result.add_argument("job_id")
    _output_arguments(result)

    listing = commands.add_parser("list", help="jobs, newest first (JSON lines)")
    listing.add_argument("--status", choices=[s.value for s in JobStatus])
    listing.add_argument("--limit", type=int, default=20, help="jobs to show in all")

    cancel = commands.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id")

    remove = commands.add_parser("delete", help="delete a job and all of its data")
    remove.add_argument("job_id")

    webhook = commands.add_parser(
        "verify-webhook", help="check a received webhook's signature against its secret"
    )
    webhook.add_argument("--secret", help=f"whsec_… (default ${config.WEBHOOK_SECRET_VARIABLE})")
    webhook.add_argument(
        "--body", required=True, help="file with the exact body received (- for stdin)"
    )
    webhook.add_argument(
        "--header",
        "-H",
        action="append",
        type=_header,
        default=[],
        metavar="'NAME: VALUE'",
        help="a received header: webhook-id, webhook-timestamp, webhook-signature",
    )
    webhook.add_argument(
        "--tolerance",
        type=float,
        default=float(DEFAULT_TOLERANCE_S),
        metavar="SECONDS",
        help="largest age of the timestamp (default %(default)s; 0 skips the check)",
    )
    return parser


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=RESULT_FORMATS, default="json", dest="result_format")
    parser.add_argument("-o", "--output", type=Path, help="write the result here (default stdout)")


def _options(args: argparse.Namespace) -> JobOptions:
    terms = [t.strip() for raw in args.vocabulary for t in raw.split(",") if t.strip()]
    try:
        return JobOptions(
            language=args.language,
            num_speakers=args.num_speakers,
            min_speakers=args.min_speakers,
            max_speakers=args.max_speakers,
            webhook_url=args.webhook_url,
            metadata=args.metadata or {},
            delete_after=args.delete_after,
            vocabulary=terms,
            prompt=args.prompt,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from None


class _UsageError(Exception):
    pass


class ProgressBar:
    """The job's progress on stderr: one redrawn line on a terminal, else a line per
    stage and per tenth."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._shown: tuple[str | None, int] | None = None

    def __call__(self, event: JobEvent) -> None:
        update = event.update
        progress = update.progress or 0.0
        label = update.stage or update.status
        if self._tty:
            filled = round(progress * BAR_WIDTH)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            self._stream.write(f"\r[{bar}] {progress:4.0%} {label:<12}")
            if event.name == "end":
                self._stream.write("\n")
        else:
            step = (label, int(progress * 10))
            if step == self._shown and event.name != "end":
                return
            self._shown = step
            self._stream.write(f"{progress:4.0%} {label}\n")
        self._stream.flush()


def _write(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(data if data.endswith(b"\n") else data + b"\n")
        sys.stdout.flush()
    else:
        output.write_bytes(data)


def _result(client: Client, job_id: str, result_format: str) -> bytes:
    if result_format == "json":
        return msgspec.json.format(msgspec.json.encode(client.result(job_id)))
    return client.rendered(job_id, result_format)


def _show(value: object) -> None:
    _write(msgspec.json.format(msgspec.json.encode(value)), None)


def _submit(client: Client, args: argparse.Namespace) -> int:
    accepted = client.submit(
        args.audio,
        _options(args),
        webhook_secret=args.webhook_secret,
        source_headers=dict(args.source_header),
        idempotency_key=args.idempotency_key,
    )
    if not args.wait:
        _show(accepted)
        return EXIT_OK
    print(f"job {accepted.id} accepted", file=sys.stderr)
    if accepted.webhook_secret:
        print(f"webhook secret (shown once): {accepted.webhook_secret}", file=sys.stderr)
    job = client.wait(accepted.id, on_event=ProgressBar(sys.stderr), timeout_s=args.timeout)
    if job.status != JobStatus.COMPLETED.value:
        raise JobEnded(job.id, job.status, job.error)
    for warning in job.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    _write(_result(client, job.id, args.result_format), args.output)
    return EXIT_OK


def _list(client: Client, args: argparse.Namespace) -> int:
    shown, cursor = 0, None
    while shown < args.limit:
        page = client.jobs(status=args.status, limit=min(100, args.limit - shown), cursor=cursor)
        for job in page.items:
            _write(msgspec.json.encode(job), None)
        shown += len(page.items)
        cursor = page.next_cursor
        if cursor is None or not page.items:
            break
    return EXIT_OK


def _verify_webhook(args: argparse.Namespace) -> int:
    secret = config.from_env(config.WEBHOOK_SECRET_VARIABLE, args.secret)
    if secret is None:
        raise _UsageError(f"give --secret or set {config.WEBHOOK_SECRET_VARIABLE}")
    body = sys.stdin.buffer.read() if args.body == "-" else Path(args.body).read_bytes()
    try:
        verify(secret, dict(args.header), body, tolerance_s=args.tolerance or None)
    except InvalidSignature as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return EXIT_JOB
    print("valid", file=sys.stderr)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Carry out one parsed command; its exit status."""
    if args.command == "verify-webhook":
        return _verify_webhook(args)
    with Client(args.url, args.api_key) as client:
        match args.command:
            case "submit":
                return _submit(client, args)
            case "status":
                _show(client.job(args.job_id))
            case "result":
                _write(_result(client, args.job_id, args.result_format), args.output)
            case "list":
                return _list(client, args)
            case "cancel":
                _show(client.cancel(args.job_id))
            case "delete":
                client.delete(args.job_id)
                print(f"job {args.job_id} deleted", file=sys.stderr)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except _UsageError as exc:
        parser.error(str(exc))
    except JobEnded as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_JOB
    except (ClientError, TimeoutError, OSError) as exc:
        # ApiError, ServiceUnreachable, a file that cannot be read or written.
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_API


if __name__ == "__main__":
    sys.exit(main())
