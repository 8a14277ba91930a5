"""Transcription: whisperX's VAD chunks decoded in batches by faster-whisper, with no speech left out."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.frames import StageFacts, segments_frame
from whisperx_assets.speech.media import SAMPLE_RATE
from whisperx_assets.speech.models import cpu_threads, resolve_device, resolve_whisper_model


@dataclasses.dataclass
class SpeechCoverage:
    """Voice-active regions (s) the batched decoding missed: recovered by decoding them alone, or still missing."""

    regions: int
    recovered: list[tuple[float, float]]
    missing: list[tuple[float, float]]


@dataclasses.dataclass
class TranscriptResult:
    segments: "pd.DataFrame"  # noqa: F821 - see frames.SEGMENT_DTYPES
    language: str
    language_probability: float | None
    facts: StageFacts
    coverage: SpeechCoverage = dataclasses.field(default_factory=lambda: SpeechCoverage(0, [], []))


def decoding_options(config: SpeechConfig) -> dict:
    """The faster-whisper decoding options users set (`suppress_numerals` is applied to the tokens)."""
    return {
        "beam_size": config.beam_size,
        "best_of": config.best_of,
        "patience": config.patience,
        "length_penalty": config.length_penalty,
        "temperature": list(config.temperatures),
        "compression_ratio_threshold": config.compression_ratio_threshold,
        "log_prob_threshold": config.log_prob_threshold,
        "no_speech_threshold": config.no_speech_threshold,
        "initial_prompt": config.initial_prompt,
        "hotwords": config.hotwords,
        "suppress_tokens": list(config.suppress_tokens),
    }


# --- which speech the decoding covered ---------------------------------------------------------------

COVER_TOLERANCE = 0.2  # s: Whisper's segment timestamps are this close to the voice they hold
SNAP_DISTANCE = 1.0  # s: a segment boundary this near a pause moves into it
PAUSE_MARGIN = 0.2  # s: of a pause kept on each side of a boundary moved into it


def uncovered(regions: list[tuple[float, float]], segments: list[dict]) -> list[tuple[float, float]]:
    """The voice-active `regions` that decoded segments cover less than half of."""
    def covered(r0: float, r1: float) -> float:
        return sum(max(0.0, min(r1, s["end"] + COVER_TOLERANCE) - max(r0, s["start"] - COVER_TOLERANCE)) for s in segments)

    return [(r0, r1) for r0, r1 in regions if covered(r0, r1) < 0.5 * (r1 - r0)]


def runs_of(regions: list[tuple[float, float]], among: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """`regions` (a subset of `among`, both in order) joined where they are neighbours in `among`."""
    index = {r: i for i, r in enumerate(among)}
    runs: list[list] = []
    for r in regions:
        if runs and index[r] == index[runs[-1][1]] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    return [(first[0], last[1]) for first, last in runs]


def snap_to_pauses(segments: list[dict], regions: list[tuple[float, float]]) -> None:
    """Move each boundary between two segments into the nearest pause between voice-active regions, when one
    is near: Whisper's timestamps are rounded and often land inside a word, which the aligner then cuts."""
    pauses = [(a[1], b[0]) for a, b in zip(regions, regions[1:]) if b[0] > a[1]]
    for left, right in zip(segments, segments[1:]):
        boundary = (left["end"] + right["start"]) / 2
        distance, pause = min(((max(p0 - boundary, boundary - p1, 0.0), (p0, p1)) for p0, p1 in pauses
                               if left["start"] < p0 and p1 < right["end"]), default=(None, None))
        if pause is not None and distance <= SNAP_DISTANCE:
            middle = (pause[0] + pause[1]) / 2
            left["end"] = min(pause[0] + PAUSE_MARGIN, middle)
            right["start"] = max(pause[1] - PAUSE_MARGIN, middle)


def encode_window(model, audio: np.ndarray):
    """Whisper's encoder output for the first 30 s of `audio` (padded as whisperX pads)."""
    from whisperx.audio import N_SAMPLES, log_mel_spectrogram

    window = audio[:N_SAMPLES]
    n_mels = model.feat_kwargs.get("feature_size") or 80
    return model.encode(log_mel_spectrogram(window, n_mels=n_mels, padding=N_SAMPLES - window.shape[0]))


class Transcriber:
    """whisperX's models (Whisper through faster-whisper, and its bundled pyannote VAD) decoding as whisperX does
    (VAD regions merged into chunks of at most `chunk_size` s, decoded in batches), with Whisper's timestamps:
    they split chunks into sentences and show which speech the decoding covered. Voice-active regions that
    got no words (batched decoding sometimes drops a chunk's first or last sentence) are decoded again on
    their own. Options apply per call: one loaded model serves
    runs with different options; only the model, device, compute type and threads need a reload."""

    def __init__(self, config: SpeechConfig):
        import whisperx
        from faster_whisper.transcribe import BatchedInferencePipeline

        self.resolved = resolve_whisper_model(config.whisper_model, config.cache_dir, config.hf_token)
        self.device, self.compute_type = resolve_device(config.device, config.compute_type)
        loaded = whisperx.load_model(
            self.resolved.location,
            self.device,
            device_index=config.device_index,
            compute_type=self.compute_type,
            language="en" if self.resolved.english_only else None,
            vad_method="pyannote",  # whisperX ships this model; silero would need torch.hub
            vad_options={"chunk_size": config.chunk_size, "vad_onset": config.vad_onset, "vad_offset": config.vad_offset},
            local_files_only=True,
            threads=cpu_threads(config.threads),
        )
        self.model, self.vad = loaded.model, loaded.vad_model
        self.batched = BatchedInferencePipeline(self.model)

    @staticmethod
    def load_key(config: SpeechConfig) -> tuple:
        return (config.whisper_model, config.device, config.device_index, config.compute_type, config.threads)

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """whisperX's detection (first 30 s after leading silence), keeping the probability it drops."""
        voiced = np.flatnonzero(np.abs(audio) > 1e-3)
        encoded = encode_window(self.model, audio[voiced[0]:] if voiced.size else audio)
        token, probability = self.model.model.detect_language(encoded)[0][0]
        return token[2:-2], float(probability)

    def language_of(self, audio: np.ndarray, config: SpeechConfig) -> tuple[str, float | None]:
        """The configured language, English for an English-only model, else detected (with its probability)."""
        if self.resolved.english_only:
            return "en", None
        if config.language is not None:
            return config.language, None
        return self.detect_language(audio)

    def speech_chunks(self, audio: np.ndarray, config: SpeechConfig) -> list[dict]:
        """whisperX's VAD chunks: {start, end, segments: [(start, end) of each voice-active region]}."""
        from whisperx.vads import Pyannote

        scores = self.vad({"waveform": Pyannote.preprocess_audio(audio), "sample_rate": SAMPLE_RATE})
        return Pyannote.merge_chunks(scores, config.chunk_size, onset=config.vad_onset, offset=config.vad_offset)

    def _options(self, config: SpeechConfig, language: str) -> dict:
        from faster_whisper.tokenizer import Tokenizer
        from whisperx.asr import find_numeral_symbol_tokens

        options = decoding_options(config)
        if config.suppress_numerals:
            tokenizer = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual, task=config.task,
                                  language=language)
            options["suppress_tokens"] = sorted(set(options["suppress_tokens"]) | set(find_numeral_symbol_tokens(tokenizer)))
        return {**options, "language": language, "task": config.task, "without_timestamps": False,
                "vad_filter": False}

    def _decode_alone(self, audio: np.ndarray, span: tuple[float, float], options: dict) -> list[dict]:
        first, last = int(span[0] * SAMPLE_RATE), int(span[1] * SAMPLE_RATE)
        # The first temperature only, as the batched pass: sampling made reruns differ and looped on short regions.
        pieces, _ = self.model.transcribe(audio[first:last], condition_on_previous_text=False,
                                          **{**options, "temperature": options["temperature"][:1]})
        return [{"start": span[0] + p.start, "end": min(span[0] + p.end, span[1]), "text": p.text,
                 "avg_logprob": p.avg_logprob} for p in pieces if p.text.strip()]

    def __call__(self, audio: np.ndarray, config: SpeechConfig) -> TranscriptResult:
        started = time.perf_counter()
        language, probability = self.language_of(audio, config)
        options = self._options(config, language)
        chunks = self.speech_chunks(audio, config)
        regions = [r for chunk in chunks for r in chunk["segments"]]
        segments: list[dict] = []
        if chunks:
            pieces, _ = self.batched.transcribe(audio, clip_timestamps=[{"start": c["start"], "end": c["end"]} for c in chunks],
                                                batch_size=config.batch_size, log_progress=False, **options)
            segments = [{"start": p.start, "end": p.end, "text": p.text, "avg_logprob": p.avg_logprob}
                        for p in pieces if p.text.strip()]
        missed = uncovered(regions, segments)
        for span in runs_of(missed, regions):
            segments.extend(self._decode_alone(audio, span, options))
        segments.sort(key=lambda s: s["start"])
        snap_to_pauses(segments, regions)
        still_missed = uncovered(regions, segments)
        audio_seconds = len(audio) / SAMPLE_RATE
        facts = StageFacts(stage="transcript", model=config.whisper_model, backend=f"faster-whisper-batched:{self.resolved.source}",
                           device=self.device, compute_type=self.compute_type, language=language,
                           language_probability=probability, audio_seconds=audio_seconds,
                           wall_seconds=time.perf_counter() - started)
        coverage = SpeechCoverage(len(regions), [r for r in missed if r not in still_missed], still_missed)
        return TranscriptResult(segments_frame(segments, language), language, probability, facts, coverage)
