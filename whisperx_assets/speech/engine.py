"""The speech engine: every whisperX stage over plain data, with each model loaded once and reused.

    engine = SpeechEngine(SpeechConfig())
    result = engine.process("meeting.mp4")          # all stages
    result.combined.words                           # DataFrame: word, start, end, score, speaker, ...

Stages can also be called one by one (`load`, `transcribe`, `align`, `diarize`, `combine`), which is what
the Dagster assets do. A per-call `config` overrides options (language, speakers, decoding options)
without reloading models unless a model-defining option changed.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from whisperx_assets.speech.align import Aligner, AlignmentResult
from whisperx_assets.speech.combine import CombinedResult, assign_speakers
from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.diarization import load_diarizer, torch_device
from whisperx_assets.speech.frames import SEGMENT_DTYPES, StageFacts, facts_frame
from whisperx_assets.speech.media import SAMPLE_RATE, MediaInfo, load_media
from whisperx_assets.speech.speakers import SpeakerEncoder
from whisperx_assets.speech.supplied import check_times, place_text, read_rttm, read_transcript
from whisperx_assets.speech.transcribe import Transcriber, TranscriptResult

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")  # pyannote.audio 4 sends usage telemetry otherwise

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DiarizationResult:
    turns: pd.DataFrame
    facts: StageFacts


@dataclasses.dataclass
class ProcessResult:
    media: MediaInfo
    transcript: TranscriptResult
    alignment: AlignmentResult
    diarization: DiarizationResult | None
    combined: CombinedResult | None

    @property
    def facts(self) -> pd.DataFrame:
        stages = [self.transcript, self.alignment, self.diarization, self.combined]
        return facts_frame([s.facts for s in stages if s is not None])


class SpeechEngine:
    def __init__(self, config: SpeechConfig | None = None):
        self.config = config or SpeechConfig()
        self._models: dict[tuple, object] = {}
        self.load_seconds: dict[str, float] = {}  # model load time per kind, for run facts and the benchmark

    def _model(self, kind: str, key: tuple, factory: Callable[[], object]):
        full_key = (kind, *key)
        if full_key not in self._models:
            # One model of each kind stays loaded: switching options frees the old one first.
            for old in [k for k in self._models if k[0] == kind]:
                del self._models[old]
            started = time.perf_counter()
            self._models[full_key] = factory()
            self.load_seconds[kind] = self.load_seconds.get(kind, 0.0) + time.perf_counter() - started
        return self._models[full_key]

    def release(self) -> None:
        """Drop every loaded model and free accelerator memory."""
        self._models.clear()
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    # --- stages ---------------------------------------------------------------------------------

    def load(self, path: str | Path, config: SpeechConfig | None = None) -> tuple[MediaInfo, np.ndarray]:
        return load_media(path, config or self.config)

    def transcriber(self, config: SpeechConfig | None = None) -> Transcriber:
        config = config or self.config
        return self._model("transcriber", Transcriber.load_key(config), lambda: Transcriber(config))

    def transcribe(self, audio: np.ndarray, config: SpeechConfig | None = None) -> TranscriptResult:
        config = config or self.config
        return self.transcriber(config)(audio, config)

    def align(self, segments: pd.DataFrame, audio: np.ndarray, language: str,
              config: SpeechConfig | None = None) -> AlignmentResult:
        config = config or self.config

        def load():
            # The whisper backend reuses the transcriber's model instead of loading a second copy.
            needs_whisper = config.align_backend == "whisper" or (config.align_backend == "auto" and language != "en")
            whisper = self.transcriber(config).model if needs_whisper else None
            return Aligner(config, language, whisper)

        return self._model("aligner", Aligner.load_key(config, language), load)(segments, audio, config)

    def diarize(self, audio: np.ndarray, config: SpeechConfig | None = None) -> DiarizationResult:
        config = config or self.config
        key = (config.diarization_model, bool(config.hf_token), config.device)
        diarizer = self._model("diarizer", key, lambda: load_diarizer(config))
        started = time.perf_counter()
        turns = diarizer(audio, num_speakers=config.num_speakers, min_speakers=config.min_speakers,
                         max_speakers=config.max_speakers)
        facts = StageFacts(stage="diarization", model=diarizer.backend.split(":", 1)[1],
                           backend=diarizer.backend, device=diarizer.device, audio_seconds=len(audio) / SAMPLE_RATE,
                           wall_seconds=time.perf_counter() - started, speakers=int(turns["speaker"].nunique()))
        return DiarizationResult(turns, facts)

    def supplied_transcript(self, name: str, text: str, audio: np.ndarray,
                            config: SpeechConfig | None = None) -> TranscriptResult:
        """A transcript the user supplies for `audio` (file `name`: whisperX JSON, SRT, WebVTT or plain text) as
        the transcript stage's result, to be force-aligned like Whisper's. Timed formats keep their times; plain
        text takes the times of Whisper's transcript of the audio (`place_text`). Its language: the file's
        (whisperX JSON), the configured one, else Whisper's detection. MediaError (`SuppliedInputError`) for a file
        that cannot be read or does not fit the audio."""
        config = config or self.config
        started, duration = time.perf_counter(), len(audio) / SAMPLE_RATE
        supplied = read_transcript(text, name, language=config.language)
        check_times(supplied.segments, duration, name)  # an end past the audio is cut to it below
        language, probability, device = supplied.language, None, "none"
        if supplied.timed:
            segments, backend = supplied.segments, "supplied"
            if language is None:
                transcriber = self.transcriber(config)
                (language, probability), device = transcriber.language_of(audio, config), transcriber.device
        else:
            machine = self.transcribe(audio, config.replace(language=language) if language else config)
            language, probability, device = machine.language, machine.language_probability, machine.facts.device
            segments, backend = place_text(supplied.segments, machine.segments, language), \
                f"supplied, timed by {machine.facts.backend}"
        facts = StageFacts(stage="transcript", model=f"supplied:{supplied.format}", backend=backend, device=device,
                           language=language, language_probability=probability, audio_seconds=duration,
                           wall_seconds=time.perf_counter() - started)
        segments = segments.assign(language=language, end=segments["end"].clip(upper=duration))
        return TranscriptResult(segments.astype(SEGMENT_DTYPES), language, probability, facts)

    def supplied_diarization(self, name: str, text: str, audio: np.ndarray) -> DiarizationResult:
        """Speaker turns the user supplies for `audio` (file `name`, RTTM) as the diarization stage's result."""
        started, duration = time.perf_counter(), len(audio) / SAMPLE_RATE
        turns = read_rttm(text, name)
        check_times(turns, duration, name)
        turns = turns.assign(end=turns["end"].clip(upper=duration))
        facts = StageFacts(stage="diarization", model="supplied:rttm", backend="supplied", device="none",
                           audio_seconds=duration, wall_seconds=time.perf_counter() - started,
                           speakers=int(turns["speaker"].nunique()))
        return DiarizationResult(turns, facts)

    def speaker_encoder(self, config: SpeechConfig | None = None) -> SpeakerEncoder:
        config = config or self.config
        device = torch_device(config)
        return self._model("speaker_encoder", (device,), lambda: SpeakerEncoder(device))

    def speaker_embeddings(self, audio: np.ndarray, turns: pd.DataFrame, config: SpeechConfig | None = None):
        """One embedding per diarized speaker of `audio` (`SpeakerEncoder.speakers`)."""
        return self.speaker_encoder(config).speakers(audio, turns)

    def voiceprint(self, clips: list[np.ndarray], config: SpeechConfig | None = None):
        """A person's voiceprint from enrollment clips (`SpeakerEncoder.voiceprint`)."""
        return self.speaker_encoder(config).voiceprint(clips)

    def combine(self, alignment: AlignmentResult, diarization: DiarizationResult) -> CombinedResult:
        return assign_speakers(alignment.segments, alignment.words, diarization.turns, alignment.facts.audio_seconds)

    def process(self, path: str | Path, config: SpeechConfig | None = None) -> ProcessResult:
        """Every stage for one media file."""
        config = config or self.config
        info, audio = self.load(path, config)
        transcript = self.transcribe(audio, config)
        alignment = self.align(transcript.segments, audio, transcript.language, config)
        if not config.diarize:
            return ProcessResult(info, transcript, alignment, None, None)
        diarization = self.diarize(audio, config)
        return ProcessResult(info, transcript, alignment, diarization, self.combine(alignment, diarization))
