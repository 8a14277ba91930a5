"""Engine configuration: every option users set on whisperX today, named as in whisperX's CLI (`beam_size`,
`vad_onset`, `min_speakers`, ...). Each field is read from the environment variable of its name in upper case
(`WHISPER_MODEL`, `DEVICE`, `BATCH_SIZE`, `HF_TOKEN`, ...) unless it names another (`DEFAULT_LANG`,
`WHISPERX_ASSETS_CACHE`). Fields marked `PER_RUN` can also be set for one run (run config, CLI flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from whisperx_assets.settings import EnvSettings

Device = Literal["auto", "cpu", "cuda"]
ComputeType = Literal["auto", "default", "float16", "float32", "int8", "int8_float16", "int8_float32", "bfloat16"]
Task = Literal["transcribe", "translate"]
AlignBackend = Literal["auto", "wav2vec2", "pocketsphinx", "whisper"]
InterpolateMethod = Literal["nearest", "linear", "ignore"]

# json_schema_extra of the fields that a run may set; "flag" is the CLI flag where it is not the field's name.
PER_RUN = {"per_run": True}


# The options that change a stage's output, not only its speed or where it runs: a stage's code version is made
# from them (`defs/assets/versions.py`). Every other field is in OUTPUT_NEUTRAL.
STAGE_OPTIONS = {
    "transcript": ("whisper_model", "compute_type", "language", "task", "beam_size", "best_of", "patience",
                   "length_penalty", "temperatures", "compression_ratio_threshold", "log_prob_threshold",
                   "no_speech_threshold", "initial_prompt", "hotwords", "suppress_tokens", "suppress_numerals",
                   "chunk_size", "vad_onset", "vad_offset"),
    "alignment": ("align_model", "align_backend", "interpolate_method", "return_char_alignments"),
    "diarization": ("diarize", "diarization_model", "num_speakers", "min_speakers", "max_speakers"),
}
OUTPUT_NEUTRAL = ("device", "device_index", "batch_size", "threads", "cache_dir", "hf_token", "max_file_bytes",
                  "max_duration_seconds")


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "whisperx-assets"


def per_run_fields() -> dict[str, "object"]:
    """The fields a run may set, with their pydantic FieldInfo (type, default, description, constraints)."""
    return {name: info for name, info in SpeechConfig.model_fields.items()
            if (info.json_schema_extra or {}).get("per_run")}


class SpeechConfig(EnvSettings):
    invalid = "invalid speech configuration"
    upper_names = False

    # Models and hardware
    whisper_model: str = Field("base", description="Whisper model: a name (tiny.en, base, large-v3, ...), a "
                               "Hugging Face id or a local CTranslate2 folder", json_schema_extra={**PER_RUN, "flag": "model"})
    device: Device = Field("auto", description="auto (CUDA when available), cpu or cuda", json_schema_extra=PER_RUN)
    device_index: int = Field(0, ge=0, description="CUDA device number")
    compute_type: ComputeType = Field("auto", description="CTranslate2 compute type (auto: float16 on GPU, int8 on "
                                      "CPU)", json_schema_extra=PER_RUN)
    batch_size: int = Field(8, ge=1, le=256, description="transcription batch size", json_schema_extra=PER_RUN)
    threads: int = Field(0, ge=0, le=256, description="CPU threads (0 = all cores)", json_schema_extra=PER_RUN)
    cache_dir: Path = Field(default_factory=default_cache_dir, validation_alias="WHISPERX_ASSETS_CACHE",
                            description="model cache: joined offline models, Punkt tables")
    hf_token: Optional[str] = Field(None, description="Hugging Face token for gated models (pyannote)")
    # Transcription (whisperX / faster-whisper decoding options)
    language: Optional[str] = Field(None, validation_alias="DEFAULT_LANG",
                                    description="language code (default: detected)", json_schema_extra=PER_RUN)
    task: Task = Field("transcribe", description="transcribe, or translate into English", json_schema_extra=PER_RUN)
    beam_size: int = Field(5, ge=1, le=20, description="beam search width", json_schema_extra=PER_RUN)
    best_of: int = Field(5, ge=1, le=20, description="candidates when sampling with a temperature",
                         json_schema_extra=PER_RUN)
    patience: float = Field(1.0, gt=0, description="beam search patience", json_schema_extra=PER_RUN)
    length_penalty: float = Field(1.0, description="beam search length penalty", json_schema_extra=PER_RUN)
    temperatures: Annotated[tuple[float, ...], NoDecode] = Field(
        (0.0, 0.2, 0.4, 0.6, 0.8, 1.0), description="fallback temperatures, comma-separated",
        json_schema_extra=PER_RUN)
    compression_ratio_threshold: float = Field(2.4, description="above it, decode again at the next temperature",
                                               json_schema_extra=PER_RUN)
    log_prob_threshold: float = Field(-1.0, description="below it, decode again at the next temperature",
                                      json_schema_extra=PER_RUN)
    no_speech_threshold: float = Field(0.6, ge=0, le=1, description="no-speech probability above which a window "
                                       "is silence", json_schema_extra=PER_RUN)
    initial_prompt: Optional[str] = Field(None, description="text to condition the first window on",
                                          json_schema_extra=PER_RUN)
    hotwords: Optional[str] = Field(None, description="words to favour (names, terms)", json_schema_extra=PER_RUN)
    suppress_tokens: Annotated[tuple[int, ...], NoDecode] = Field((-1,), description="token ids never emitted")
    suppress_numerals: bool = Field(False, description="spell numbers out (better alignment)",
                                    json_schema_extra=PER_RUN)
    chunk_size: int = Field(30, ge=1, le=30, description="VAD chunk length in seconds", json_schema_extra=PER_RUN)
    vad_onset: float = Field(0.500, gt=0, lt=1, description="VAD speech onset threshold", json_schema_extra=PER_RUN)
    vad_offset: float = Field(0.363, gt=0, lt=1, description="VAD speech offset threshold", json_schema_extra=PER_RUN)
    # Alignment
    align_model: Optional[str] = Field(None, description="wav2vec2 CTC model: local folder, Hugging Face id or torchaudio bundle name (default: by language)",
                                       json_schema_extra=PER_RUN)
    align_backend: AlignBackend = Field("auto", description="word alignment: wav2vec2, pocketsphinx (offline), "
                                        "whisper (its own timestamps) or auto", json_schema_extra=PER_RUN)
    interpolate_method: InterpolateMethod = Field("nearest", description="timing of words alignment cannot place",
                                                  json_schema_extra=PER_RUN)
    return_char_alignments: bool = Field(False, description="keep character timings")
    # Diarization
    diarize: bool = Field(True, description="assign speakers")
    diarization_model: str = Field("pyannote/speaker-diarization-community-1",
                                   description="pretrained pyannote pipeline (hub id or folder), used when HF_TOKEN is set or it is cached; 'offline': the bundled one",
                                   json_schema_extra=PER_RUN)
    num_speakers: Optional[int] = Field(None, ge=1, le=64, description="exact number of speakers",
                                        json_schema_extra=PER_RUN)
    min_speakers: Optional[int] = Field(None, ge=1, le=64, description="at least this many speakers",
                                        json_schema_extra=PER_RUN)
    max_speakers: Optional[int] = Field(None, ge=1, le=64, description="at most this many speakers",
                                        json_schema_extra=PER_RUN)
    # Input limits
    max_file_bytes: int = Field(4 * 1024**3, gt=0, description="larger input files are refused (bytes)")
    max_duration_seconds: float = Field(6 * 3600.0, gt=0, description="longer media is refused (seconds)")

    def stage_options(self, stage: str) -> dict:
        """The options that shape `stage`'s output, with their values (none for a stage without options)."""
        return {name: getattr(self, name) for name in STAGE_OPTIONS.get(stage, ())}

    @field_validator("temperatures", "suppress_tokens", mode="before")
    @classmethod
    def comma_separated(cls, value):
        return tuple(v.strip() for v in value.split(",")) if isinstance(value, str) else value

    @field_validator("temperatures")
    @classmethod
    def temperatures_in_range(cls, value: tuple[float, ...]):
        if not value or not all(0.0 <= t <= 1.0 for t in value):
            raise ValueError(f"must be values in 0..1, got {value}")
        return value

    @model_validator(mode="after")
    def speaker_bounds(self):
        if self.min_speakers and self.max_speakers and self.min_speakers > self.max_speakers:
            raise ValueError(f"min_speakers ({self.min_speakers}) must not exceed max_speakers ({self.max_speakers})")
        return self
