"""Engine configuration: every option users set on whisperX today, with defaults from the environment.

Names follow whisperX's CLI (`beam_size`, `vad_onset`, `min_speakers`, ...). Environment variables are the
upper-case names (`WHISPER_MODEL`, `DEVICE`, `COMPUTE_TYPE`, `BATCH_SIZE`, `HF_TOKEN`, ...), except
`DEFAULT_LANG` for `language` and `WHISPERX_ASSETS_CACHE` for `cache_dir`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

INTERPOLATE_METHODS = ("nearest", "linear", "ignore")
ALIGN_BACKENDS = ("auto", "wav2vec2", "pocketsphinx", "whisper")
TASKS = ("transcribe", "translate")
DEVICES = ("auto", "cpu", "cuda")
COMPUTE_TYPES = ("auto", "default", "float16", "float32", "int8", "int8_float16", "int8_float32", "bfloat16")


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "whisperx-assets"


@dataclass(frozen=True)
class SpeechConfig:
    # Models and hardware
    whisper_model: str = "base"
    device: str = "auto"
    device_index: int = 0
    compute_type: str = "auto"
    batch_size: int = 8
    threads: int = 0  # 0 = all cores
    cache_dir: Path = field(default_factory=default_cache_dir)
    hf_token: str | None = None
    # Transcription (whisperX / faster-whisper decoding options)
    language: str | None = None  # None = detect
    task: str = "transcribe"
    beam_size: int = 5
    best_of: int = 5
    patience: float = 1.0
    length_penalty: float = 1.0
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float = 2.4
    log_prob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    initial_prompt: str | None = None
    hotwords: str | None = None
    suppress_tokens: tuple[int, ...] = (-1,)
    suppress_numerals: bool = False
    chunk_size: int = 30
    vad_onset: float = 0.500
    vad_offset: float = 0.363
    # Alignment
    align_model: str | None = None
    align_backend: str = "auto"
    interpolate_method: str = "nearest"
    return_char_alignments: bool = False
    # Diarization
    diarize: bool = True
    diarization_model: str = "pyannote/speaker-diarization-community-1"
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    # Input limits
    max_file_bytes: int = 4 * 1024**3
    max_duration_seconds: float = 6 * 3600.0

    def __post_init__(self):
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        object.__setattr__(self, "temperatures", tuple(self.temperatures))
        object.__setattr__(self, "suppress_tokens", tuple(self.suppress_tokens))
        problems = []

        def check(ok: bool, message: str):
            if not ok:
                problems.append(message)

        check(self.device in DEVICES, f"device must be one of {DEVICES}, got {self.device!r}")
        check(self.compute_type in COMPUTE_TYPES, f"compute_type must be one of {COMPUTE_TYPES}, got {self.compute_type!r}")
        check(self.task in TASKS, f"task must be one of {TASKS}, got {self.task!r}")
        check(self.align_backend in ALIGN_BACKENDS, f"align_backend must be one of {ALIGN_BACKENDS}, got {self.align_backend!r}")
        check(self.interpolate_method in INTERPOLATE_METHODS,
              f"interpolate_method must be one of {INTERPOLATE_METHODS}, got {self.interpolate_method!r}")
        check(1 <= self.batch_size <= 256, f"batch_size must be in 1..256, got {self.batch_size}")
        check(0 <= self.threads <= 256, f"threads must be in 0..256, got {self.threads}")
        check(1 <= self.beam_size <= 20, f"beam_size must be in 1..20, got {self.beam_size}")
        check(1 <= self.best_of <= 20, f"best_of must be in 1..20, got {self.best_of}")
        check(1 <= self.chunk_size <= 30, f"chunk_size must be in 1..30 seconds, got {self.chunk_size}")
        check(0.0 < self.vad_onset < 1.0, f"vad_onset must be in (0, 1), got {self.vad_onset}")
        check(0.0 < self.vad_offset < 1.0, f"vad_offset must be in (0, 1), got {self.vad_offset}")
        check(all(0.0 <= t <= 1.0 for t in self.temperatures) and len(self.temperatures) > 0,
              f"temperatures must be values in 0..1, got {self.temperatures}")
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(self, name)
            check(value is None or 1 <= value <= 64, f"{name} must be in 1..64, got {value}")
        if self.min_speakers and self.max_speakers:
            check(self.min_speakers <= self.max_speakers,
                  f"min_speakers ({self.min_speakers}) must not exceed max_speakers ({self.max_speakers})")
        check(self.max_file_bytes > 0, "max_file_bytes must be positive")
        check(self.max_duration_seconds > 0, "max_duration_seconds must be positive")
        if problems:
            raise ValueError("invalid speech configuration: " + "; ".join(problems))

    def replace(self, **changes) -> "SpeechConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "SpeechConfig":
        """Defaults from environment variables named after the fields in upper case.

        WHISPER_MODEL, DEVICE, COMPUTE_TYPE, BATCH_SIZE, DEFAULT_LANG, HF_TOKEN and the rest:
        see the README's configuration table.
        """
        env = os.environ if environ is None else environ
        aliases = {"language": "DEFAULT_LANG", "cache_dir": "WHISPERX_ASSETS_CACHE"}
        values: dict = {}
        for f in dataclasses.fields(cls):
            name = aliases.get(f.name, f.name.upper())
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(name, f.type, raw)
        values.update(overrides)
        return cls(**values)


def _parse(env_name: str, type_: str, raw: str):
    t = str(type_)
    try:
        if t.startswith("tuple[float"):
            return tuple(float(v) for v in raw.split(","))
        if t.startswith("tuple[int"):
            return tuple(int(v) for v in raw.split(","))
        if t.startswith("bool"):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if t.startswith("int"):
            return int(raw)
        if t.startswith("float"):
            return float(raw)
        if t == "Path":
            return Path(raw)
        return raw
    except ValueError:
        raise ValueError(f"environment variable {env_name}={raw!r} is not a valid {t}") from None
