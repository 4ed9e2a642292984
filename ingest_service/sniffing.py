"""Recognise audio containers by their leading bytes, without decoding anything."""

from __future__ import annotations

import enum

#: How many leading bytes `sniff_audio` needs to decide.
SNIFF_BYTES = 16


class AudioFormat(enum.StrEnum):
    WAV = "wav"
    MP3 = "mp3"
    FLAC = "flac"
    OGG = "ogg"
    MP4 = "m4a"
    AAC = "aac"
    WEBM = "webm"


#: Human-readable list of what uploads may be, for error messages.
ACCEPTED_FORMATS = "WAV, MP3, FLAC, OGG (Vorbis/Opus), M4A/MP4, AAC (ADTS), WebM/Matroska"


def is_adts_frame(head: bytes) -> bool:
    """ADTS AAC: a 12-bit sync 0xFFF with layer bits 00."""
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0


def is_mpeg_audio_frame(head: bytes) -> bool:
    # 11-bit frame sync, then a valid MPEG version (not 01) and layer (not 00),
    # a bitrate index that is not 1111 and a sample-rate index that is not 11.
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version = (head[1] >> 3) & 0b11
    layer = (head[1] >> 1) & 0b11
    bitrate = head[2] >> 4
    sample_rate = (head[2] >> 2) & 0b11
    return version != 0b01 and layer != 0b00 and bitrate != 0b1111 and sample_rate != 0b11


def sniff_audio(head: bytes) -> AudioFormat | None:
    """The container format that `head` (the first bytes of a file) starts, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return AudioFormat.WAV
    if head[:4] == b"fLaC":
        return AudioFormat.FLAC
    if head[:4] == b"OggS":
        return AudioFormat.OGG
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return AudioFormat.WEBM
    if head[4:8] == b"ftyp":
        return AudioFormat.MP4
    if head[:3] == b"ID3":
        return AudioFormat.MP3
    # Checked before MPEG audio frames, whose sync it shares.
    if is_adts_frame(head):
        return AudioFormat.AAC
    if is_mpeg_audio_frame(head):
        return AudioFormat.MP3
    return None
