"""Structural checks of an upload's container, from a few header reads and no decoding.

Sniffing (`ingest_service.sniffing`) says what a file claims to be; this says whether its
own headers contradict what arrived: a WAV without samples or shorter than its declared
sizes, an ID3 tag followed by something that is not an MPEG frame, a FLAC, Ogg or MP4
file cut short. Each check reads only headers at known offsets of the stored file, so it
costs a handful of small reads from the page cache whatever the file's size. What takes
decoding to find out is left to the split stage, which fails the job with a reason.

Streaming writers cannot know the length when they write the header and put a
placeholder there instead (ffmpeg 0xFFFFFFFF; sox and espeak-ng 0x7FFFF000 plus the
header); those are never taken for a claim.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import BinaryIO

from ingest_service.problems import BrokenAudio
from ingest_service.sniffing import AudioFormat, is_adts_frame, is_mpeg_audio_frame

#: Declared 32-bit sizes that mean "unknown yet" rather than a length.
_PLACEHOLDERS = ((0x7FFF_F000, 0x7FFF_FFFF), (0xFFFF_F000, 0xFFFF_FFFF))
#: How many chunks, blocks, boxes or tags a walk looks at before it stops checking.
_MAX_STEPS = 256
#: A declared WAV size may exceed what arrived by this much (a header's worth: some
#: writers count the RIFF header in, or a pad byte); a real shortfall is far larger.
_SLACK_BYTES = 64


class _File:
    """Reads at offsets of one stored upload of known size."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size:
            return b""
        self._f.seek(offset)
        return self._f.read(length)


def _placeholder(value: int) -> bool:
    return value == 0 or any(low <= value <= high for low, high in _PLACEHOLDERS)


def _broken(kind: str, reason: str) -> BrokenAudio:
    return BrokenAudio(f"the {kind} file is not playable: {reason}", format=kind.lower())


def _check_wav(f: _File) -> None:
    riff_size = struct.unpack("<I", f.read(4, 4))[0]
    if not _placeholder(riff_size) and riff_size + 8 > f.size + _SLACK_BYTES:
        raise _broken("WAV", f"its header declares {riff_size + 8} bytes but {f.size} arrived")
    offset, block_align = 12, 0
    for _ in range(_MAX_STEPS):
        header = f.read(offset, 8)
        if len(header) < 8:
            break
        chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
        body = offset + 8
        if chunk_id == b"fmt ":
            fmt = f.read(body, 16)
            if len(fmt) < 16:
                raise _broken("WAV", "its format chunk is cut short")
            channels, rate = struct.unpack("<HI", fmt[2:8])
            block_align = struct.unpack("<H", fmt[12:14])[0]
            if channels == 0 or rate == 0:
                raise _broken("WAV", "its format chunk declares no channels or no sample rate")
        elif chunk_id == b"data":
            if block_align == 0:
                raise _broken("WAV", "its samples come before any format chunk")
            arrived = f.size - body
            if arrived < block_align:
                raise _broken("WAV", "it holds no samples")
            if not _placeholder(chunk_size) and chunk_size > arrived + _SLACK_BYTES:
                raise _broken(
                    "WAV",
                    f"its header declares {chunk_size} bytes of samples but {arrived} arrived",
                )
            return
        offset = body + chunk_size + (chunk_size & 1)
    raise _broken("WAV", "it has no data chunk (no samples)")


def _syncsafe(raw: bytes) -> int | None:
    if any(b & 0x80 for b in raw):
        return None
    return (raw[0] << 21) | (raw[1] << 14) | (raw[2] << 7) | raw[3]


def _check_id3(f: _File) -> None:
    offset = 0
    for _ in range(_MAX_STEPS):
        head = f.read(offset, 10)
        if head[:3] != b"ID3":
            break
        size = _syncsafe(head[6:10]) if len(head) == 10 and head[3] <= 4 else None
        if size is None:
            raise _broken("MP3", "its ID3 tag header is malformed")
        offset += 10 + size + (10 if head[5] & 0x10 else 0)
    # Some writers pad after the tag with zeros; the audio starts after them.
    for _ in range(_MAX_STEPS):
        window = f.read(offset, 4096)
        rest = window.lstrip(b"\0")
        offset += len(window) - len(rest)
        if rest or not window:
            break
    frame = f.read(offset, 4)
    if not frame:
        raise _broken("MP3", "nothing follows its ID3 tag: it holds no audio")
    if not (is_mpeg_audio_frame(frame) or is_adts_frame(frame)):
        raise _broken("MP3", "its ID3 tag is not followed by an MPEG audio frame")


def _check_flac(f: _File) -> None:
    offset = 4
    for step in range(_MAX_STEPS):
        header = f.read(offset, 4)
        if len(header) < 4:
            raise _broken("FLAC", "it is cut short inside its metadata")
        last, kind = header[0] & 0x80, header[0] & 0x7F
        length = int.from_bytes(header[1:], "big")
        if step == 0 and (kind != 0 or length != 34):
            raise _broken("FLAC", "it does not start with a STREAMINFO block")
        if kind == 127:
            raise _broken("FLAC", "it has an invalid metadata block")
        if step == 0:
            info = f.read(offset + 4, 34)
            if len(info) < 34 or int.from_bytes(info[10:13], "big") >> 4 == 0:
                raise _broken("FLAC", "its STREAMINFO is cut short or declares no sample rate")
        offset += 4 + length
        if offset > f.size:
            raise _broken("FLAC", "it is cut short inside its metadata")
        if last:
            frame = f.read(offset, 2)
            if len(frame) < 2:
                raise _broken("FLAC", "it holds no audio frames")
            if frame[0] != 0xFF or frame[1] & 0xFE != 0xF8:
                raise _broken("FLAC", "its metadata is not followed by an audio frame")
            return


def _ogg_page_end(f: _File, offset: int) -> int | None:
    """Where the Ogg page at `offset` ends, or None if no page starts there."""
    header = f.read(offset, 27)
    if len(header) < 27 or header[:4] != b"OggS":
        return None
    if header[4] != 0:
        raise _broken("Ogg", "it has an unknown page version")
    lacing = f.read(offset + 27, header[26])
    if len(lacing) < header[26]:
        raise _broken("Ogg", "it is cut short inside a page header")
    end = offset + 27 + header[26] + sum(lacing)
    if end > f.size:
        raise _broken("Ogg", "it is cut short inside a page")
    return end


def _check_ogg(f: _File) -> None:
    if not f.read(5, 1)[0] & 0x02:
        raise _broken("Ogg", "its first page does not begin a stream")
    end = _ogg_page_end(f, 0)
    assert end is not None  # sniffed as "OggS"
    if _ogg_page_end(f, end) is None:
        raise _broken("Ogg", "it holds only its first page: no audio follows the stream header")


def _check_mp4(f: _File) -> None:
    offset, seen = 0, set[bytes]()
    for _ in range(_MAX_STEPS):
        header = f.read(offset, 16)
        if len(header) < 8:
            break
        size, kind = struct.unpack(">I4s", header[:8])
        if size == 1:
            if len(header) < 16:
                raise _broken("MP4", "it is cut short inside a box header")
            size = struct.unpack(">Q", header[8:16])[0]
        elif size == 0:
            size = f.size - offset
        if size < 8:
            raise _broken("MP4", f"its {kind.decode(errors='replace')!r} box has an invalid size")
        if not seen and kind != b"ftyp":
            raise _broken("MP4", "it does not start with an 'ftyp' box")
        if offset + size > f.size:
            if kind == b"mdat" and b"moov" in seen:
                return  # the sample table is complete; only the tail of the media is missing
            raise _broken(
                "MP4", f"it is cut short inside its {kind.decode(errors='replace')!r} box"
            )
        seen.add(kind)
        offset += size
    if b"moov" not in seen and offset >= f.size:
        raise _broken("MP4", "it has no 'moov' box: the file was cut short or never finished")


_CHECKS: dict[AudioFormat, Callable[[_File], None]] = {
    AudioFormat.WAV: _check_wav,
    AudioFormat.FLAC: _check_flac,
    AudioFormat.OGG: _check_ogg,
    AudioFormat.MP4: _check_mp4,
}


def check_structure(f: BinaryIO, size: int, audio_format: AudioFormat) -> None:
    """Raise `BrokenAudio` (422) if the stored file's headers show it cannot be played."""
    source = _File(f, size)
    if audio_format is AudioFormat.MP3 and source.read(0, 3) == b"ID3":
        _check_id3(source)
    elif (check := _CHECKS.get(audio_format)) is not None:
        check(source)
