"""Input media: check a file, read its metadata, decode its audio to 16 kHz mono float32.

Plain functions over plain data (no Dagster, no torch). Decoding uses the ffmpeg binary with the same
conversion as `whisperx.audio.load_audio` (signed 16-bit PCM at 16 kHz, mono, divided by 32768), so the
samples are identical to whisperX's for the same stream; the difference is that the first audio stream is
chosen explicitly, the output is streamed into one preallocated float32 array (the file's audio is never
held twice), and bad input is reported as `MediaError(path, reason)`, which callers never retry.

What is rejected, and how it is detected (in this order; every check is deterministic):

- unsupported extension: the suffix (case-insensitive) is not in `SUPPORTED_EXTENSIONS`; checked before
  anything runs on the file. A file without a suffix is unsupported too.
- missing file / not a regular file / unreadable (permission denied).
- empty file: 0 bytes.
- too large: more bytes than `config.max_file_bytes` (checked before probing).
- not media: ffprobe cannot open it; or ffprobe recognises a format only with its lowest score
  ("misdetection possible", as for random bytes that look like an MP3/AAC frame, but also for a valid
  0.1 s MP3) and decoding then fails or logs errors (whatever `strict` says).
- truncated (the message always contains the word "truncated"):
  * an MP4/MOV/M4A whose boxes start normally but whose index (`moov`) is missing: cut short or a
    recording that never finished;
  * a WAV whose `data` chunk declares more bytes than the file holds, or an AVI whose RIFF header
    declares more bytes than the file holds (more than 8 bytes short, tolerating a common writer bug);
  * an Ogg file (.ogg .oga .opus) that ends inside a page;
  * an AMR/AMR-WB file that ends inside a frame, or holds an invalid frame type;
  * the decoded audio is shorter than the duration the container declares (not an estimate) by more
    than max(0.5 s, 2 %) (e.g. an MP3 with a Xing/LAME header, a FLAC, an MP4 with its index first,
    an MKV/WebM cut short);
  * ffmpeg logs any error while decoding the audio (a cut ADTS .aac frame, a cut WMA packet, "File
    ended prematurely", a damaged frame). This is strict on purpose: a damaged file fails visibly
    instead of giving a silently incomplete transcript. Pass `strict=False` to `decode`/`load_media`
    to accept such files (the errors are then logged as a warning).
  A file cut exactly at a frame/page boundary of a format that declares no duration (ADTS .aac, AMR,
  Ogg, MP3 without a Xing header) is indistinguishable from a shorter valid file and is accepted.
- no audio stream: the file has streams but none is audio (a video-only MP4). A cover picture in an MP3
  is not video (`has_video` is False for it).
- too long: the declared duration (or the exact AMR frame count) exceeds `config.max_duration_seconds`
  at probe time; for durations that are only estimates, decoding stops at the limit and fails there, so
  memory stays bounded either way.

Digital silence is valid: it decodes to zeros.

ffmpeg and ffprobe always run without a shell, with `-nostdin`, stdin from /dev/null, a timeout, only
the `file` protocol allowed, and the file passed as `file:<absolute path>` (a name starting with '-' or
containing ':' cannot be read as an option or a protocol). A timeout raises `TimeoutError` (an ordinary,
retryable failure, not a `MediaError`); a missing ffmpeg raises `RuntimeError`.

AMR-NB (.amr) is decoded with sox (libopencore-amrnb) when sox has AMR-NB support: ffmpeg 5.1 (Debian
12) drops about 6 frames in every 4 KiB of an .amr file ("Corrupt bitstream"). Without sox the ffmpeg
path is used with its errors tolerated and a warning.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import mmap
import os
import re
import shutil
import stat
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .config import SpeechConfig
from .errors import MediaError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset({".oga", ".m4a", ".aac", ".wav", ".amr", ".wma", ".awb", ".mp3", ".ogg", ".flac", ".opus"})
VIDEO_EXTENSIONS = frozenset({".wmv", ".mkv", ".avi", ".mov", ".mp4", ".webm"})
SUPPORTED_EXTENSIONS: frozenset[str] = AUDIO_EXTENSIONS | VIDEO_EXTENSIONS
SAMPLE_RATE = 16000

PROBE_TIMEOUT_S = 60.0
# Decoding must run at least this many times faster than real time, plus a fixed allowance.
DECODE_TIMEOUT_BASE_S = 120.0
DECODE_MIN_SPEED = 10.0
# Decoded audio shorter than the declared duration by more than this is truncated.
TRUNCATION_TOLERANCE_S = 0.5
TRUNCATION_TOLERANCE_FRACTION = 0.02

_READ_CHUNK = 1 << 20  # bytes of PCM read from ffmpeg at a time
_STDERR_KEEP = 20  # error lines kept for messages
_REPEATED = re.compile(r"Last message repeated (\d+) times?")


@dataclass(frozen=True)
class MediaInfo:
    """What ffprobe (and, for some formats, a structural scan) says about a media file.

    `duration` is in seconds: after `probe`, the container's figure (None when it declares none);
    after `load_media`, the exact length of the decoded audio. `duration_source` says where it came
    from: "stream" or "container" (declared), "estimate" (ffprobe guessed from the bit rate), "frames"
    (counted AMR frames), "decoded", or "unknown".
    """

    path: str
    size_bytes: int
    format_name: str
    duration: float | None
    audio_codec: str
    channels: int
    sample_rate: int
    bit_rate: int | None
    streams: tuple[dict, ...] = field(default_factory=tuple)
    has_video: bool = False
    duration_source: str = "unknown"
    # ffprobe recognised the format only with its lowest score ("misdetection possible"): a very short
    # file, or random bytes that look like an MP3/AAC frame. Decoding such a file must be error-free.
    format_guessed: bool = False

    @property
    def duration_declared(self) -> bool:
        return self.duration is not None and self.duration_source in ("stream", "container", "frames")

    def as_dict(self) -> dict:
        """JSON-friendly metadata (e.g. for a Dagster output)."""
        return {
            "path": self.path,
            "size_bytes": self.size_bytes,
            "format_name": self.format_name,
            "duration": self.duration,
            "duration_source": self.duration_source,
            "audio_codec": self.audio_codec,
            "channels": self.channels,
            "sample_rate": self.sample_rate,
            "bit_rate": self.bit_rate,
            "streams": [dict(s) for s in self.streams],
            "has_video": self.has_video,
        }


# ---------------------------------------------------------------------------------------------------
# Public API


def probe(path: str | os.PathLike, config: SpeechConfig) -> MediaInfo:
    """Check `path` and read its metadata with ffprobe; raise `MediaError` for bad input (see module doc)."""
    shown = os.fspath(path)
    p = Path(shown)
    size = _check_file(p, shown, config)
    _check_structure_before_probe(p, shown, size)
    data, warnings = _ffprobe(p, shown)
    info = _media_info(p, shown, size, data, warnings)
    info = _check_structure_after_probe(p, shown, size, info)
    if info.duration_declared and info.duration > config.max_duration_seconds:
        raise MediaError(shown, f"duration {info.duration:.1f} s exceeds the limit of "
                                f"{config.max_duration_seconds:g} s (max_duration_seconds)")
    return info


def decode(path: str | os.PathLike, config: SpeechConfig, *, strict: bool = True) -> np.ndarray:
    """The first audio stream of `path` as 16 kHz mono float32 in [-1, 1] (probes first).

    `strict=False` accepts audio that decoded with errors or shorter than declared (logged as a warning);
    files that cannot be decoded at all are still refused.
    """
    return load_media(path, config, strict=strict)[1]


def load_media(path: str | os.PathLike, config: SpeechConfig, *, strict: bool = True) -> tuple[MediaInfo, np.ndarray]:
    """Probe and decode `path`; the returned info's duration is the decoded length (source "decoded")."""
    info = probe(path, config)
    audio = _decode(Path(os.fspath(path)), os.fspath(path), info, config, strict)
    decoded = len(audio) / SAMPLE_RATE
    return _replace(info, duration=decoded, duration_source="decoded"), audio


# ---------------------------------------------------------------------------------------------------
# Checks before any program runs


def _check_file(p: Path, shown: str, config: SpeechConfig) -> int:
    try:
        st = p.stat()
    except FileNotFoundError:
        raise MediaError(shown, "file not found") from None
    except PermissionError:
        raise MediaError(shown, "cannot read the file: permission denied") from None
    except OSError as e:
        raise MediaError(shown, f"cannot read the file: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise MediaError(shown, "not a regular file")
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        what = f"extension {p.suffix!r}" if p.suffix else "no file extension"
        raise MediaError(shown, f"unsupported file type ({what}); supported: {' '.join(sorted(SUPPORTED_EXTENSIONS))}")
    if st.st_size == 0:
        raise MediaError(shown, "empty file (0 bytes)")
    if st.st_size > config.max_file_bytes:
        raise MediaError(shown, f"file is {st.st_size} bytes, larger than the limit of {config.max_file_bytes} "
                                f"bytes (max_file_bytes)")
    if not os.access(p, os.R_OK):
        raise MediaError(shown, "cannot read the file: permission denied")
    return st.st_size


def _read_head(p: Path, shown: str, n: int) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise MediaError(shown, f"cannot read the file: {e.strerror or e}") from None


def _check_structure_before_probe(p: Path, shown: str, size: int) -> None:
    head = _read_head(p, shown, 12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        _check_wav(p, shown, size)
    elif head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        declared = struct.unpack("<I", head[4:8])[0]
        if declared not in (0, 0xFFFFFFFF) and declared > size:  # tolerates writers that count the 8-byte header
            raise MediaError(shown, f"truncated AVI file: its header declares {8 + declared} bytes, "
                                    f"the file has {size}")


def _check_wav(p: Path, shown: str, size: int) -> None:
    """A WAV whose data chunk declares more bytes than the file holds is truncated."""
    with open(p, "rb") as f:
        pos = 12
        for _ in range(1000):
            f.seek(pos)
            header = f.read(8)
            if len(header) < 8:
                return  # no data chunk found: let ffprobe judge
            chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):  # written as a stream: size unknown
                    return
                present = size - (pos + 8)
                if chunk_size > present:
                    raise MediaError(shown, f"truncated WAV file: its header declares {chunk_size} bytes of "
                                            f"audio, the file holds {max(present, 0)}")
                return
            pos += 8 + chunk_size + (chunk_size & 1)


_ISO_BOX_TYPES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp"}


def _check_structure_after_probe(p: Path, shown: str, size: int, info: MediaInfo) -> MediaInfo:
    """Format-specific truncation checks; for AMR also the exact duration from the frame count."""
    if info.format_name == "ogg":
        _check_ogg(p, shown, size)
    elif info.format_name == "amr":
        scanned = _scan_amr(p, shown, size)
        if scanned is not None:
            return _replace(info, duration=scanned[1] * 0.020, duration_source="frames")
    return info


def _check_ogg(p: Path, shown: str, size: int) -> None:
    """An Ogg file that ends inside a page is truncated (bytes that are not a page end the scan)."""
    with open(p, "rb") as f:
        pos = 0
        while pos < size:
            f.seek(pos)
            header = f.read(27)
            if not header.startswith(b"OggS") and not (len(header) < 4 and b"OggS".startswith(header)):
                return
            lacing = f.read(header[26]) if len(header) == 27 else b""
            if len(header) < 27 or len(lacing) < header[26]:
                raise MediaError(shown, f"truncated Ogg file: it ends inside a page header at byte {pos}")
            end = pos + 27 + header[26] + sum(lacing)
            if end > size:
                raise MediaError(shown, f"truncated Ogg file: its last page needs {end - size} more bytes")
            pos = end


# AMR storage format (RFC 4867 section 5): magic, then frames of one ToC byte plus a payload whose size
# the frame type gives. Sizes without the ToC byte; None marks reserved frame types.
_AMR_NB_SIZES = (12, 13, 15, 17, 19, 20, 26, 31, 5, 6, 5, 5, None, None, None, 0)
_AMR_WB_SIZES = (17, 23, 32, 36, 40, 46, 50, 58, 60, 5, None, None, None, None, 0, 0)


def _scan_amr(p: Path, shown: str, size: int) -> tuple[str, int] | None:
    """(kind "nb"/"wb", frame count) of a single-channel AMR file, or None if the magic is not known."""
    head = _read_head(p, shown, 9)
    if head.startswith(b"#!AMR-WB\n"):
        kind, pos, sizes = "wb", 9, _AMR_WB_SIZES
    elif head.startswith(b"#!AMR\n"):
        kind, pos, sizes = "nb", 6, _AMR_NB_SIZES
    else:
        return None
    frames = 0
    with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        table = [(s + 1) if s is not None else -1 for s in sizes]
        while pos < size:
            step = table[(m[pos] >> 3) & 0x0F]
            if step < 0:
                raise MediaError(shown, f"truncated or corrupt AMR file: invalid frame type at byte {pos}")
            pos += step
            frames += 1
    if pos > size:
        raise MediaError(shown, f"truncated AMR file: its last frame needs {pos - size} more bytes")
    return kind, frames


# ---------------------------------------------------------------------------------------------------
# ffprobe


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found on PATH: install ffmpeg (apt-get install ffmpeg)")
    return found


def _input_url(p: Path) -> str:
    return "file:" + str(p.absolute())


def _ffprobe(p: Path, shown: str) -> tuple[dict, list[str]]:
    cmd = [_binary("ffprobe"), "-hide_banner", "-v", "warning", "-protocol_whitelist", "file",
           "-show_format", "-show_streams", "-of", "json", _input_url(p)]
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{shown}: ffprobe did not finish within {PROBE_TIMEOUT_S:g} s") from None
    stderr = done.stderr.decode("utf-8", "replace")
    lines = [_clean(line, p) for line in stderr.splitlines() if line.strip()]
    if done.returncode != 0:
        reason = lines[-1] if lines else f"ffprobe exited with status {done.returncode}"
        if any("moov atom not found" in line for line in lines):
            head = _read_head(p, shown, 8)
            if head[4:8] in _ISO_BOX_TYPES:
                raise MediaError(shown, "truncated or unfinished MP4/QuickTime file: its index (moov atom) "
                                        "is missing")
        raise MediaError(shown, f"not a readable media file ({reason})")
    try:
        data = json.loads(done.stdout or b"{}")
    except ValueError:
        raise MediaError(shown, "not a readable media file (ffprobe gave no metadata)") from None
    return data, lines


_CONTEXT_ADDRESS = re.compile(r"\[([^\]@]+?) @ 0x[0-9a-fA-F]+\]")


def _clean(line: str, p: Path) -> str:
    """An ffmpeg log line without our internal URL and without memory addresses ("[aac @ 0x55...]" -> "[aac]"),
    so that messages are the same from run to run and name the file once, as the caller gave it."""
    line = line.strip()
    for url in (_input_url(p), str(p.absolute())):
        if line.startswith(url + ": "):
            line = line[len(url) + 2:]
        line = line.replace(url, "<input>")
    return _CONTEXT_ADDRESS.sub(r"[\1]", line)


def _number(value, kind=float):
    try:
        result = kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        return None
    if isinstance(result, float) and not math.isfinite(result):
        return None
    return result


def _tag_duration(stream: dict) -> float | None:
    """Matroska stores per-stream durations as a tag: "HH:MM:SS.nnnnnnnnn"."""
    tags = stream.get("tags") or {}
    raw = tags.get("DURATION") or tags.get("duration")
    if not raw:
        return None
    try:
        h, m, s = raw.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except ValueError:
        return None


def _media_info(p: Path, shown: str, size: int, data: dict, warnings: list[str]) -> MediaInfo:
    fmt = data.get("format") or {}
    raw_streams = data.get("streams") or []
    if not raw_streams:
        raise MediaError(shown, "not a readable media file (no streams)")
    streams = tuple({"index": int(s.get("index", i)), "codec_type": s.get("codec_type", "unknown"),
                     "codec_name": s.get("codec_name")} for i, s in enumerate(raw_streams))
    video = [s for s in raw_streams if s.get("codec_type") == "video"
             and not (s.get("disposition") or {}).get("attached_pic")]
    audio = [s for s in raw_streams if s.get("codec_type") == "audio"]
    if not audio:
        kinds = ", ".join(f"{s['codec_type']} {s['codec_name'] or '?'}" for s in streams)
        raise MediaError(shown, f"no audio stream (the file has: {kinds})")
    a = audio[0]
    codec = a.get("codec_name")
    channels = _number(a.get("channels"), int) or 0
    sample_rate = _number(a.get("sample_rate"), int) or 0
    guessed = any("misdetection possible" in w for w in warnings)
    if not codec or codec == "none" or channels <= 0 or sample_rate <= 0:
        what = f"codec {codec or 'unknown'}, {channels} channels, {sample_rate} Hz"
        if guessed:
            raise MediaError(shown, f"not a readable media file (format guessed with low confidence; {what})")
        raise MediaError(shown, f"the audio stream cannot be decoded ({what})")
    estimated = any("Estimating duration from bitrate" in w for w in warnings)
    duration, source = _number(a.get("duration")), "stream"
    if duration is None:
        duration, source = _tag_duration(a), "stream"
    if duration is None:
        duration, source = _number(fmt.get("duration")), ("estimate" if video else "container")
    if duration is None:
        source = "unknown"
    elif estimated:
        source = "estimate"
    bit_rate = _number(a.get("bit_rate"), int) or _number(fmt.get("bit_rate"), int)
    return MediaInfo(path=shown, size_bytes=size, format_name=str(fmt.get("format_name") or "unknown"),
                     duration=duration, audio_codec=codec, channels=channels, sample_rate=sample_rate,
                     bit_rate=bit_rate, streams=streams, has_video=bool(video), duration_source=source,
                     format_guessed=guessed)


def _replace(info: MediaInfo, **changes) -> MediaInfo:
    return dataclasses.replace(info, **changes)


# ---------------------------------------------------------------------------------------------------
# Decoding


@lru_cache(maxsize=1)
def _sox_reads_amr_nb() -> str | None:
    """The sox binary when it can read AMR-NB (Debian libsox-fmt-base, via libopencore-amrnb), else None."""
    sox = shutil.which("sox")
    if sox is None:
        return None
    try:
        help_text = subprocess.run([sox, "-h"], stdin=subprocess.DEVNULL, capture_output=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return sox if b"amr-nb" in help_text else None


def _decode(p: Path, shown: str, info: MediaInfo, config: SpeechConfig, strict: bool) -> np.ndarray:
    limit = config.max_duration_seconds
    expected = info.duration if info.duration is not None else 30.0  # only sizes the first buffer
    # Time for twice the expected audio (estimates can be low), or for the longest allowed when unknown.
    budget = limit if info.duration is None else min(2 * info.duration, limit)
    timeout = DECODE_TIMEOUT_BASE_S + budget / DECODE_MIN_SPEED
    tolerate_errors = False
    if info.format_name == "amr" and info.audio_codec == "amr_nb" and _sox_reads_amr_nb():
        # -R -D: repeatable, no dither (the same samples every run); an absolute path is never read as an
        # option, a pipe ("|cmd") or a URL.
        cmd = [_sox_reads_amr_nb(), "-V1", "-R", "-D", "-t", "amr-nb", str(p.absolute()),
               "-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1", "-r", str(SAMPLE_RATE), "-",
               "trim", "0", f"{limit + 1.0:.3f}"]
        program = "sox"
    else:
        if info.format_name == "amr" and info.audio_codec == "amr_nb":
            log.warning("%s: decoding AMR-NB with ffmpeg; ffmpeg 5.1 drops frames (install sox with AMR-NB "
                        "support: libsox-fmt-base)", shown)
            tolerate_errors = True
        cmd = [_binary("ffmpeg"), "-nostdin", "-hide_banner", "-v", "error", "-threads", "0",
               "-protocol_whitelist", "file", "-i", _input_url(p),
               "-map", "0:a:0", "-vn", "-sn", "-dn", "-f", "s16le", "-ac", "1", "-acodec", "pcm_s16le",
               "-ar", str(SAMPLE_RATE), "-t", f"{limit + 1.0:.3f}", "pipe:1"]
        program = "ffmpeg"
    capacity = int(min(expected, limit) * SAMPLE_RATE) + SAMPLE_RATE
    audio, errors, error_count, returncode = _run_decoder(cmd, shown, program, capacity, timeout, p)
    decoded = len(audio) / SAMPLE_RATE

    if returncode < 0:  # killed by a signal (out of memory, shutdown): not the file's fault
        raise RuntimeError(f"{shown}: {program} was killed by signal {-returncode}")
    if returncode != 0:
        reason = errors[-1] if errors else f"{program} exited with status {returncode}"
        if info.format_guessed:
            raise MediaError(shown, f"not a readable media file (format {info.format_name} guessed with low "
                                    f"confidence, and decoding failed: {reason})")
        raise MediaError(shown, f"cannot decode the audio ({reason})")
    if decoded > limit:
        raise MediaError(shown, f"duration exceeds the limit of {limit:g} s (max_duration_seconds)")
    if len(audio) == 0:
        raise MediaError(shown, "truncated or corrupt: no audio could be decoded"
                                + (f" ({errors[0]})" if errors else ""))
    if error_count and not tolerate_errors:
        summary = "; ".join(dict.fromkeys(errors[:3]))
        if info.format_guessed:
            raise MediaError(shown, f"not a readable media file (format {info.format_name} guessed with low "
                                    f"confidence, and decoding failed: {summary})")
        message = (f"truncated or corrupt: {program} reported {error_count} error(s) while decoding "
                   f"({summary})")
        if strict:
            raise MediaError(shown, message)
        log.warning("%s: %s; accepted because strict=False", shown, message)
    if info.duration_declared and not tolerate_errors:
        missing = info.duration - decoded
        if missing > max(TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_FRACTION * info.duration):
            message = (f"truncated: the file declares {info.duration:.2f} s of audio but only {decoded:.2f} s "
                       f"could be decoded")
            if strict:
                raise MediaError(shown, message)
            log.warning("%s: %s; accepted because strict=False", shown, message)
    return audio


def _run_decoder(cmd: list[str], shown: str, program: str, capacity: int, timeout: float, p: Path):
    """Run a decoder writing s16le to stdout; convert chunk by chunk into one float32 array.

    Returns (audio, first error lines, error line count, return code).
    """
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                bufsize=0)
    except FileNotFoundError:
        raise RuntimeError(f"{program} not found: install it") from None
    errors: list[str] = []
    counter = [0]

    def drain_stderr():
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            repeated = _REPEATED.match(line)
            counter[0] += int(repeated.group(1)) if repeated else 1
            if repeated:
                continue
            if len(errors) < _STDERR_KEEP:
                errors.append(_clean(line, p))

    reader = threading.Thread(target=drain_stderr, daemon=True)
    reader.start()
    timed_out = threading.Event()

    def on_timeout():
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, on_timeout)
    timer.daemon = True
    timer.start()
    out = np.empty(max(capacity, SAMPLE_RATE), dtype=np.float32)
    n = 0
    buf = bytearray(_READ_CHUNK + 1)
    view = memoryview(buf)
    carry = 0  # an odd byte left from the previous read
    scale = np.float32(32768.0)
    try:
        while True:
            got = proc.stdout.readinto(view[carry:_READ_CHUNK])
            if not got:
                break
            total = carry + got
            usable = total - (total & 1)
            k = usable // 2
            if n + k > len(out):
                out.resize(max(n + k, int(len(out) * 1.5)), refcheck=False)
            np.divide(np.frombuffer(buf, dtype="<i2", count=k), scale, out=out[n:n + k])
            n += k
            carry = total - usable
            if carry:
                buf[0] = buf[usable]
        returncode = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        reader.join(timeout=5)
        proc.stderr.close()
    if timed_out.is_set():
        raise TimeoutError(f"{shown}: {program} did not finish decoding within {timeout:g} s")
    out.resize(n, refcheck=False)
    return out, errors, counter[0], returncode
