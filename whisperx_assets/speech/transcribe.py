"""Transcription with whisperX's batched faster-whisper pipeline and the bundled pyannote VAD."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.frames import StageFacts, segments_frame
from whisperx_assets.speech.media import SAMPLE_RATE
from whisperx_assets.speech.models import cpu_threads, resolve_device, resolve_whisper_model



@dataclasses.dataclass
class TranscriptResult:
    segments: "pd.DataFrame"  # noqa: F821 - see frames.SEGMENT_DTYPES
    language: str
    language_probability: float | None
    facts: StageFacts


def asr_options(config: SpeechConfig) -> dict:
    """The faster-whisper decoding options users set, in whisperX's names."""
    return {
        "beam_size": config.beam_size,
        "best_of": config.best_of,
        "patience": config.patience,
        "length_penalty": config.length_penalty,
        "temperatures": list(config.temperatures),
        "compression_ratio_threshold": config.compression_ratio_threshold,
        "log_prob_threshold": config.log_prob_threshold,
        "no_speech_threshold": config.no_speech_threshold,
        "initial_prompt": config.initial_prompt,
        "hotwords": config.hotwords,
        "suppress_tokens": list(config.suppress_tokens),
        "suppress_numerals": config.suppress_numerals,
    }


def encode_window(model, audio: np.ndarray):
    """Whisper's encoder output for the first 30 s of `audio` (padded as whisperX pads)."""
    from whisperx.audio import N_SAMPLES, log_mel_spectrogram

    window = audio[:N_SAMPLES]
    n_mels = model.feat_kwargs.get("feature_size") or 80
    return model.encode(log_mel_spectrogram(window, n_mels=n_mels, padding=N_SAMPLES - window.shape[0]))


class Transcriber:
    """A loaded whisperX pipeline. Decoding and VAD options are applied per call, so one loaded model
    serves runs with different options; only the model, device, compute type and threads need a reload."""

    def __init__(self, config: SpeechConfig):
        import whisperx

        self.resolved = resolve_whisper_model(config.whisper_model, config.cache_dir, config.hf_token)
        self.device, self.compute_type = resolve_device(config.device, config.compute_type)
        self.pipeline = whisperx.load_model(
            self.resolved.location,
            self.device,
            device_index=config.device_index,
            compute_type=self.compute_type,
            asr_options=asr_options(config),
            language="en" if self.resolved.english_only else None,
            vad_method="pyannote",  # whisperX ships this model; silero would need torch.hub
            vad_options={"chunk_size": config.chunk_size, "vad_onset": config.vad_onset, "vad_offset": config.vad_offset},
            task=config.task,
            local_files_only=True,
            threads=cpu_threads(config.threads),
        )
        self._default_options = self.pipeline.options

    @staticmethod
    def load_key(config: SpeechConfig) -> tuple:
        return (config.whisper_model, config.device, config.device_index, config.compute_type, config.threads)

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """whisperX's detection (first 30 s after leading silence), keeping the probability it drops."""
        voiced = np.flatnonzero(np.abs(audio) > 1e-3)
        model = self.pipeline.model
        encoded = encode_window(model, audio[voiced[0]:] if voiced.size else audio)
        token, probability = model.model.detect_language(encoded)[0][0]
        return token[2:-2], float(probability)

    def __call__(self, audio: np.ndarray, config: SpeechConfig) -> TranscriptResult:
        from faster_whisper.transcribe import TranscriptionOptions

        started = time.perf_counter()
        options = asr_options(config)
        self.pipeline.suppress_numerals = options.pop("suppress_numerals")
        self.pipeline.options = dataclasses.replace(self._default_options, **options)
        assert isinstance(self.pipeline.options, TranscriptionOptions)
        self.pipeline._vad_params.update(vad_onset=config.vad_onset, vad_offset=config.vad_offset)

        language, probability = config.language, None
        if self.resolved.english_only:
            language = "en"
        elif language is None:
            language, probability = self.detect_language(audio)
        result = self.pipeline.transcribe(audio, batch_size=config.batch_size, language=language, task=config.task,
                                          chunk_size=config.chunk_size)
        audio_seconds = len(audio) / SAMPLE_RATE
        facts = StageFacts(stage="transcript", model=config.whisper_model, backend=f"whisperx-batched:{self.resolved.source}",
                           device=self.device, compute_type=self.compute_type, language=language,
                           language_probability=probability, audio_seconds=audio_seconds,
                           wall_seconds=time.perf_counter() - started)
        return TranscriptResult(segments_frame(result["segments"], language), language, probability, facts)
