from __future__ import annotations

import pytest

from ingest_service.sniffing import AudioFormat, sniff_audio
from tests.support.audio import wav_bytes


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (wav_bytes(0.01)[:16], AudioFormat.WAV),
        (b"fLaC\x00\x00\x00\x22" + b"\x00" * 8, AudioFormat.FLAC),
        (b"OggS\x00\x02" + b"\x00" * 10, AudioFormat.OGG),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81" + b"\x00" * 8, AudioFormat.WEBM),
        (b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 4, AudioFormat.MP4),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 6, AudioFormat.MP3),
        (b"\xff\xfb\x90\x64" + b"\x00" * 12, AudioFormat.MP3),  # MPEG-1 layer III frame
        (b"\xff\xf1\x50\x80" + b"\x00" * 12, AudioFormat.AAC),  # ADTS
    ],
)
def test_known_containers_are_recognised(head: bytes, expected: AudioFormat) -> None:
    assert sniff_audio(head) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"hello world, just text",
        b"%PDF-1.7\n" + b"\x00" * 8,
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 8,
        b"RIFF\x00\x00\x00\x00AVI LIST",  # RIFF, but video
        b"\xff\xff\xff\xff" + b"\x00" * 12,  # sync bits with invalid header fields
        b"",
    ],
)
def test_other_bytes_are_not_audio(head: bytes) -> None:
    assert sniff_audio(head) is None
