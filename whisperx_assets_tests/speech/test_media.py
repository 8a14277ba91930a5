"""Media checks and decoding on real files made here: an espeak-ng phrase encoded to every supported format.

The fixtures are generated once per module with ffmpeg, sox (AMR-NB) and, for AMR-WB, the VisualOn encoder
library (Debian package libvo-amrwbenc0) called through ctypes, since neither this ffmpeg nor sox can
encode AMR-WB. A format whose encoder is missing on the machine is skipped with the reason, never faked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whisperx_assets.speech import media
from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.errors import MediaError
from whisperx_assets.speech.media import SAMPLE_RATE, SUPPORTED_EXTENSIONS, MediaInfo, decode, load_media, probe

PHRASE = "The quick brown fox jumps over the lazy dog, then it runs into the forest."
CONFIG = SpeechConfig()


@dataclass(frozen=True)
class Spec:
    ext: str
    codec: str  # ffprobe's codec_name of the audio stream
    sample_rate: int
    channels: int
    video: bool
    ffmpeg_args: tuple[str, ...] = ()  # audio (and video) encoder arguments
    encoders: tuple[str, ...] = ()  # ffmpeg encoders needed


VIDEO_IN = ("-f", "lavfi", "-i", "color=c=blue:size=64x64:rate=10")
SPECS = {s.ext: s for s in [
    Spec(".wav", "pcm_s16le", 44100, 2, False, ("-c:a", "pcm_s16le"), ("pcm_s16le",)),
    Spec(".flac", "flac", 44100, 2, False, ("-c:a", "flac"), ("flac",)),
    Spec(".mp3", "mp3", 44100, 2, False, ("-c:a", "libmp3lame", "-b:a", "96k"), ("libmp3lame",)),
    Spec(".ogg", "vorbis", 44100, 2, False, ("-c:a", "libvorbis"), ("libvorbis",)),
    Spec(".oga", "opus", 48000, 2, False, ("-c:a", "libopus", "-f", "ogg"), ("libopus",)),  # Telegram voice notes
    Spec(".opus", "opus", 48000, 2, False, ("-c:a", "libopus"), ("libopus",)),
    Spec(".m4a", "aac", 44100, 2, False, ("-c:a", "aac"), ("aac",)),
    Spec(".aac", "aac", 44100, 2, False, ("-c:a", "aac"), ("aac",)),  # ADTS
    Spec(".wma", "wmav2", 44100, 2, False, ("-c:a", "wmav2"), ("wmav2",)),
    Spec(".amr", "amr_nb", 8000, 1, False),  # sox + libopencore-amrnb
    Spec(".awb", "amr_wb", 16000, 1, False),  # libvo-amrwbenc through ctypes
    Spec(".mp4", "aac", 44100, 2, True, ("-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"), ("libx264", "aac")),
    Spec(".mov", "aac", 44100, 2, True, ("-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"), ("libx264", "aac")),
    Spec(".mkv", "aac", 44100, 2, True, ("-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"), ("libx264", "aac")),
    Spec(".webm", "vorbis", 44100, 2, True, ("-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libvorbis"),
         ("libvpx", "libvorbis")),
    Spec(".avi", "mp3", 44100, 2, True, ("-c:v", "mpeg4", "-c:a", "libmp3lame"), ("mpeg4", "libmp3lame")),
    Spec(".wmv", "wmav2", 44100, 2, True, ("-c:v", "wmv2", "-c:a", "wmav2"), ("wmv2", "wmav2")),
]}


def test_specs_cover_every_supported_extension():
    assert set(SPECS) == set(SUPPORTED_EXTENSIONS)


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, stdin=subprocess.DEVNULL)


def ffmpeg(*args: str) -> None:
    run("ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", "-threads", "1", *args)


def ffmpeg_encoders() -> set[str]:
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return {line.split()[1] for line in out.splitlines() if len(line.split()) > 1 and line.startswith(" ")}


def sox_writes_amr_nb() -> bool:
    return shutil.which("sox") is not None and "amr-nb" in subprocess.run(
        ["sox", "-h"], capture_output=True, text=True).stdout


def amr_wb_encoder():
    """The VisualOn AMR-WB encoder library (Debian: libvo-amrwbenc0), or None."""
    for name in ("libvo-amrwbenc.so.0", ctypes.util.find_library("vo-amrwbenc")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.E_IF_init.restype = ctypes.c_void_p
        lib.E_IF_encode.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_short),
                                    ctypes.POINTER(ctypes.c_ubyte), ctypes.c_int]
        lib.E_IF_encode.restype = ctypes.c_int
        lib.E_IF_exit.argtypes = [ctypes.c_void_p]
        return lib
    return None


AWB_MODE = 8  # 23.85 kbit/s: 60-byte payload + 1 ToC byte per 20 ms frame


def encode_awb(lib, pcm16k: np.ndarray, path: Path) -> None:
    """A real AMR-WB storage file (RFC 4867 section 5): magic, then one encoded frame per 320 samples."""
    frames = -(-len(pcm16k) // 320)
    pcm = np.zeros(frames * 320, dtype=np.int16)
    pcm[: len(pcm16k)] = pcm16k
    state = lib.E_IF_init()
    out = bytearray(b"#!AMR-WB\n")
    buf = (ctypes.c_ubyte * 128)()
    try:
        for i in range(frames):
            frame = np.ascontiguousarray(pcm[i * 320:(i + 1) * 320])
            n = lib.E_IF_encode(state, AWB_MODE, frame.ctypes.data_as(ctypes.POINTER(ctypes.c_short)), buf, 0)
            out += bytes(buf[:n])
    finally:
        lib.E_IF_exit(state)
    path.write_bytes(bytes(out))


@dataclass
class Fixtures:
    root: Path
    source: Path  # 44.1 kHz stereo 16-bit wav of the phrase
    duration: float
    reference: np.ndarray  # the source at 16 kHz mono
    files: dict[str, Path]
    skipped: dict[str, str]


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Fixtures:
    for tool in ("ffmpeg", "ffprobe", "espeak-ng", "sox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    root = tmp_path_factory.mktemp("media")
    run("espeak-ng", "-v", "en-us", "-w", str(root / "voice.wav"), PHRASE)
    source = root / "source.wav"
    # Stereo at 44.1 kHz, the left channel a little louder: probing must report 2 channels.
    run("sox", str(root / "voice.wav"), "-r", "44100", "-c", "2", "-b", "16", str(source),
        "remix", "1v0.9", "1v0.7", "pad", "0.2", "0.3")
    mono16k = root / "mono16k.wav"
    run("sox", str(source), "-r", "16000", "-c", "1", "-b", "16", str(mono16k))
    pcm16k, sr = sf.read(mono16k, dtype="int16")
    assert sr == SAMPLE_RATE
    duration = sf.info(source).duration
    encoders = ffmpeg_encoders()
    files: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for ext, spec in SPECS.items():
        out = root / f"speech{ext}"
        missing = [e for e in spec.encoders if e not in encoders]
        if missing:
            skipped[ext] = f"ffmpeg has no encoder {missing}"
        elif ext == ".amr":
            if not sox_writes_amr_nb():
                skipped[ext] = "sox cannot write AMR-NB (install libsox-fmt-base)"
            else:
                run("sox", str(source), "-r", "8000", "-c", "1", "-t", "amr-nb", "-C", "7", str(out))
        elif ext == ".awb":
            lib = amr_wb_encoder()
            if lib is None:
                skipped[ext] = "no AMR-WB encoder: apt-get install libvo-amrwbenc0"
            else:
                encode_awb(lib, pcm16k, out)
        elif spec.video:
            ffmpeg(*VIDEO_IN, "-i", str(source), "-t", f"{duration:.3f}", *spec.ffmpeg_args, str(out))
        else:
            ffmpeg("-i", str(source), *spec.ffmpeg_args, str(out))
        if ext not in skipped:
            files[ext] = out
    reference = pcm16k.astype(np.float32) / 32768.0
    return Fixtures(root, source, duration, reference, files, skipped)


def media_file(fx: Fixtures, ext: str) -> Path:
    if ext in fx.skipped:
        pytest.skip(f"cannot make a {ext} file here: {fx.skipped[ext]}")
    return fx.files[ext]


def envelope(audio: np.ndarray, hop: int) -> np.ndarray:
    n = len(audio) // hop
    return np.sqrt((audio[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(axis=1))


def envelope_similarity(a: np.ndarray, b: np.ndarray, hop: int = 320, max_lag: int = 15) -> float:
    """Best correlation of 20 ms loudness envelopes over lags of up to 0.3 s (codec delays differ)."""
    x, y = envelope(a, hop), envelope(b, hop)
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        xs, ys = x[max(lag, 0):], y[max(-lag, 0):]
        n = min(len(xs), len(ys))
        best = max(best, float(np.corrcoef(xs[:n], ys[:n])[0, 1]))
    return best


def expect_media_error(path, *fragments: str, config: SpeechConfig = CONFIG, **kwargs) -> MediaError:
    with pytest.raises(MediaError) as caught:
        load_media(path, config, **kwargs)
    err = caught.value
    assert err.path == str(path)
    assert str(path) in str(err)
    for fragment in fragments:
        assert fragment in err.reason, err.reason
    return err


# ---------------------------------------------------------------------------------------------------
# Every format


@pytest.mark.parametrize("ext", sorted(SPECS))
def test_every_format_decodes_to_16k_mono_float32(fx, ext):
    path = media_file(fx, ext)
    info, audio = load_media(path, CONFIG)
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.flags.c_contiguous
    assert info.duration == pytest.approx(len(audio) / SAMPLE_RATE) and info.duration_source == "decoded"
    assert abs(len(audio) / SAMPLE_RATE - fx.duration) < 0.1, (len(audio) / SAMPLE_RATE, fx.duration)
    assert np.abs(audio).max() <= 1.0
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    assert rms > 0.02, rms
    # The same speech: the loudness envelopes of the decoded file and of the source agree.
    assert envelope_similarity(audio, fx.reference) > 0.9
    assert np.array_equal(decode(path, CONFIG), audio)


@pytest.mark.parametrize("ext", sorted(SPECS))
def test_probe_metadata(fx, ext):
    spec, path = SPECS[ext], media_file(fx, ext)
    info = probe(path, CONFIG)
    assert isinstance(info, MediaInfo)
    assert info.path == str(path)
    assert info.size_bytes == path.stat().st_size
    assert info.audio_codec == spec.codec
    assert info.channels == spec.channels
    assert info.sample_rate == spec.sample_rate
    assert info.has_video is spec.video
    assert info.duration is not None
    if info.duration_source == "estimate":  # ADTS .aac: ffprobe guesses from the bit rate
        assert abs(info.duration - fx.duration) < 0.25 * fx.duration, info
    else:
        assert abs(info.duration - fx.duration) < 0.1, info
    assert info.bit_rate is None or info.bit_rate > 0
    kinds = [s["codec_type"] for s in info.streams]
    assert kinds.count("audio") == 1 and kinds.count("video") == int(spec.video)
    assert all(set(s) == {"index", "codec_type", "codec_name"} for s in info.streams)
    assert json.loads(json.dumps(info.as_dict()))["audio_codec"] == spec.codec


def test_decoding_matches_whisperx_load_audio(fx):
    """Same samples as whisperx.audio.load_audio's ffmpeg command (run here without importing whisperx)."""
    for ext in (".mp3", ".mp4"):
        path = media_file(fx, ext)
        out = subprocess.run(["ffmpeg", "-nostdin", "-threads", "0", "-i", str(path), "-f", "s16le", "-ac", "1",
                              "-acodec", "pcm_s16le", "-ar", "16000", "-"], capture_output=True, check=True).stdout
        expected = np.frombuffer(out, np.int16).flatten().astype(np.float32) / 32768.0
        assert np.array_equal(decode(path, CONFIG), expected)


def test_amr_nb_keeps_every_frame(fx):
    """ffmpeg 5.1 drops frames of .amr files over 4 KiB; the decoded length must match the frame count."""
    path = media_file(fx, ".amr")
    assert path.stat().st_size > 4096
    info = probe(path, CONFIG)
    assert info.duration_source == "frames"
    assert len(decode(path, CONFIG)) == round(info.duration * SAMPLE_RATE)  # every 20 ms frame


def test_cover_picture_is_not_video(fx, tmp_path):
    path = tmp_path / "cover.mp3"
    ffmpeg("-i", str(media_file(fx, ".mp3")), "-f", "lavfi", "-i", "color=size=32x32:duration=1", "-frames:v", "1",
           "-map", "0:a", "-map", "1:v", "-c:a", "copy", "-c:v", "mjpeg", "-disposition:v", "attached_pic", str(path))
    info = probe(path, CONFIG)
    assert [s["codec_type"] for s in info.streams] == ["audio", "video"]
    assert info.has_video is False


def test_digital_silence_is_valid(tmp_path):
    for ext, codec in ((".wav", "pcm_s16le"), (".mp3", "libmp3lame"), (".m4a", "aac")):
        path = tmp_path / f"silence{ext}"
        ffmpeg("-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", "2", "-c:a", codec, str(path))
        info, audio = load_media(path, CONFIG)
        assert abs(len(audio) / SAMPLE_RATE - 2.0) < 0.1
        assert np.abs(audio).max() < 1e-3
        if ext == ".wav":
            assert not audio.any()


def test_awkward_file_names(fx, tmp_path, monkeypatch):
    wav = media_file(fx, ".wav")
    monkeypatch.chdir(tmp_path)
    for name in ("-y.wav", "-i.wav", "concat:a.wav", "http:x.wav", "a b #1?.WAV", "ünï cödé.wav"):
        shutil.copyfile(wav, tmp_path / name)
        info, audio = load_media(name, CONFIG)  # relative, exactly as given
        assert info.path == name and abs(len(audio) / SAMPLE_RATE - fx.duration) < 0.1


# ---------------------------------------------------------------------------------------------------
# Bad input


def test_missing_file(tmp_path):
    expect_media_error(tmp_path / "nowhere.wav", "not found")


def test_directory_is_not_a_file(tmp_path):
    (tmp_path / "folder.wav").mkdir()
    expect_media_error(tmp_path / "folder.wav", "not a regular file")


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp3").write_bytes(b"")
    expect_media_error(tmp_path / "empty.mp3", "empty")


@pytest.mark.parametrize("ext", [".mp3", ".wav", ".mp4", ".ogg", ".aac", ".amr", ".mkv"])
def test_text_renamed_is_not_media(tmp_path, ext):
    path = tmp_path / f"notes{ext}"
    path.write_text("Meeting notes\n" + "- nothing here is audio, it is only text.\n" * 200)
    err = expect_media_error(path, "not a readable media file")
    assert "truncated" not in err.reason


@pytest.mark.parametrize("ext", [".mp3", ".aac", ".wav"])
def test_random_bytes_are_not_media(tmp_path, ext):
    path = tmp_path / f"noise{ext}"
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    expect_media_error(path, "not a readable media file")
    expect_media_error(path, "not a readable media file", strict=False)


@pytest.mark.parametrize("ext", [".mp3", ".aac", ".amr", ".wav"])
def test_very_short_file_is_valid(tmp_path, ext):
    """A 0.1 s MP3 is recognised only with ffprobe's lowest score; it must still decode."""
    path = tmp_path / f"beep{ext}"
    if ext == ".amr":
        if not sox_writes_amr_nb():
            pytest.skip("sox cannot write AMR-NB")
        run("sox", "-n", "-r", "8000", "-c", "1", "-t", "amr-nb", str(path), "synth", "0.1", "sine", "440")
    else:
        ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=0.1", str(path))
    audio = decode(path, CONFIG)
    assert abs(len(audio) / SAMPLE_RATE - 0.1) < 0.05 and np.abs(audio).max() > 0.05


def cut_in_half(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    cut = len(data) // 2
    frame = {".amr": (6, 32), ".awb": (9, 61)}.get(source.suffix)
    if frame and (cut - frame[0]) % frame[1] == 0:
        cut += 1  # a cut on a frame boundary is a valid shorter AMR file
    target.write_bytes(data[:cut])
    return target


@pytest.mark.parametrize("ext", sorted(SPECS))
def test_every_format_cut_in_half_is_truncated(fx, tmp_path, ext):
    path = cut_in_half(media_file(fx, ext), tmp_path / f"half{ext}")
    expect_media_error(path, "truncated")


def test_mp4_with_index_first_cut_in_half(fx, tmp_path):
    whole = tmp_path / "faststart.mp4"
    ffmpeg("-i", str(media_file(fx, ".mp4")), "-c", "copy", "-movflags", "+faststart", str(whole))
    expect_media_error(cut_in_half(whole, tmp_path / "half.mp4"), "truncated")


def test_wav_header_declaring_more_data_than_present(fx, tmp_path):
    data = media_file(fx, ".wav").read_bytes()
    path = tmp_path / "short.wav"
    path.write_bytes(data[: len(data) - 4 * 44100])  # a whole number of stereo frames: ffmpeg itself is silent
    err = expect_media_error(path, "truncated WAV")
    assert "declares" in err.reason


def test_damaged_file_decodes_with_strict_false(fx, tmp_path):
    path = cut_in_half(media_file(fx, ".aac"), tmp_path / "half.aac")
    expect_media_error(path, "truncated or corrupt", "error")
    audio = decode(path, CONFIG, strict=False)
    assert 0.3 * fx.duration < len(audio) / SAMPLE_RATE < 0.7 * fx.duration


def test_video_without_audio(tmp_path):
    path = tmp_path / "silent-film.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=size=64x64:rate=10:duration=2", "-c:v", "mpeg4", str(path))
    expect_media_error(path, "no audio stream", "video")


@pytest.mark.parametrize("name", ["speech.xyz", "speech", "speech.txt", "speech.wav.part"])
def test_unsupported_extension_is_refused_before_probing(fx, tmp_path, monkeypatch, name):
    path = tmp_path / name
    shutil.copyfile(media_file(fx, ".wav"), path)

    def no_probe(*args, **kwargs):
        raise AssertionError("ffprobe must not run on an unsupported extension")

    monkeypatch.setattr(media, "_ffprobe", no_probe)
    expect_media_error(path, "unsupported file type")


def test_extension_is_case_insensitive(fx, tmp_path):
    path = tmp_path / "SPEECH.MP3"
    shutil.copyfile(media_file(fx, ".mp3"), path)
    assert probe(path, CONFIG).audio_codec == "mp3"


def test_file_larger_than_limit(fx):
    path = media_file(fx, ".wav")
    err = expect_media_error(path, "max_file_bytes", config=CONFIG.replace(max_file_bytes=1000))
    assert str(path.stat().st_size) in err.reason


def test_duration_longer_than_limit_at_probe(fx):
    with pytest.raises(MediaError, match="max_duration_seconds"):
        probe(media_file(fx, ".flac"), CONFIG.replace(max_duration_seconds=1.0))


def test_duration_longer_than_limit_when_only_estimated(fx):
    """ADTS .aac declares no duration (ffprobe estimates it): decoding stops at the limit and fails."""
    path = media_file(fx, ".aac")
    config = CONFIG.replace(max_duration_seconds=1.0)
    assert probe(path, config).duration_source == "estimate"
    expect_media_error(path, "max_duration_seconds", config=config)


def test_timeouts_are_not_media_errors(fx, monkeypatch):
    path = media_file(fx, ".mp3")
    monkeypatch.setattr(media, "DECODE_TIMEOUT_BASE_S", 0.0)
    monkeypatch.setattr(media, "DECODE_MIN_SPEED", 1e9)
    with pytest.raises(TimeoutError, match="did not finish"):
        load_media(path, CONFIG)
    monkeypatch.setattr(media, "PROBE_TIMEOUT_S", 1e-4)
    with pytest.raises(TimeoutError, match="did not finish"):
        probe(path, CONFIG)


def test_import_is_light():
    code = ("import sys, whisperx_assets.speech.media; "
            "heavy = [m for m in ('torch', 'whisperx', 'dagster', 'pyannote', 'transformers') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
