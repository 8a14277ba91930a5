"""A stand-in speech engine for orchestration tests, and the product's code location with it.

`StandInEngine` answers the stages the assets call (`load`, `transcribe`, `align`, `diarize`, `release`; the
supplied results are the real engine's) with
small, valid, deterministic results of the real types (`TranscriptResult`, `AlignmentResult`,
`DiarizationResult`, frames built by `speech.frames`), derived from the audio's bytes: no model is loaded and
torch is never imported (the `combined` asset's speaker assignment is replaced too), so a file costs
milliseconds. It reads 16 kHz mono WAV files with soundfile (the
real loader starts ffprobe and ffmpeg for each file); any other file is refused as bad media.

`defs` is the product's `Definitions` (every asset, check, job and sensor of `whisperx_assets.definitions`)
with only the `whisperx` resource replaced; `standin_workspace.yaml` serves it under the product's location
name, so a real webserver and daemon run the whole pipeline on it.
"""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from dagster import Definitions

from whisperx_assets import definitions as product  # not its `defs` by name: one Definitions per module
from whisperx_assets.defs.assets import speech as speech_assets
from whisperx_assets.defs.resources import WhisperXResource
from whisperx_assets.speech.align import AlignmentResult
from whisperx_assets.speech.combine import CombinedResult
from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.engine import DiarizationResult, SpeechEngine
from whisperx_assets.speech.errors import MediaError
from whisperx_assets.speech.frames import StageFacts, segments_frame, turns_frame, words_frame
from whisperx_assets.speech.media import SAMPLE_RATE, MediaInfo
from whisperx_assets.speech.transcribe import TranscriptResult

MODEL = "stand-in"
LANGUAGE = "en"
VOCABULARY = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


def _seed(audio: np.ndarray) -> int:
    return zlib.crc32(audio.tobytes())


def _seconds(audio: np.ndarray) -> float:
    return len(audio) / SAMPLE_RATE


def _unit_vector(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=256)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _facts(stage: str, audio: np.ndarray, started: float, **extra) -> StageFacts:
    return StageFacts(stage=stage, model=MODEL, backend=MODEL, device="cpu", audio_seconds=_seconds(audio),
                      wall_seconds=time.perf_counter() - started, **extra)


class StandInEngine:
    """The `SpeechEngine` stages the assets use, without models: same inputs, same result types."""

    def load(self, path: str | Path, config=None) -> tuple[MediaInfo, np.ndarray]:
        shown = os.fspath(path)
        try:
            info = sf.info(shown)
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise MediaError(shown, f"not a WAV file the stand-in engine reads ({exc})") from None
        if info.samplerate != SAMPLE_RATE or info.channels != 1:
            raise MediaError(shown, f"the stand-in engine reads 16 kHz mono only ({info.samplerate} Hz, "
                                    f"{info.channels} channels)")
        audio, _ = sf.read(shown, dtype="float32")
        codec = "pcm_s16le" if info.subtype == "PCM_16" else info.subtype.lower()
        media = MediaInfo(path=shown, size_bytes=os.path.getsize(shown), format_name="wav",
                          duration=_seconds(audio), audio_codec=codec, channels=1, sample_rate=SAMPLE_RATE,
                          bit_rate=info.samplerate * 16 if info.subtype == "PCM_16" else None, duration_source="decoded",
                          streams=({"index": 0, "codec_type": "audio", "codec_name": codec, "channels": 1,
                                    "sample_rate": SAMPLE_RATE},))
        return media, audio

    def transcribe(self, audio: np.ndarray, config=None) -> TranscriptResult:
        """One segment over the first 90 % of the audio, 2 to 4 words picked by the audio's bytes."""
        started, seed = time.perf_counter(), _seed(audio)
        text = " ".join(VOCABULARY[(seed >> (3 * i)) % len(VOCABULARY)] for i in range(2 + seed % 3))
        segment = {"start": 0.0, "end": round(0.9 * _seconds(audio), 3), "text": text, "avg_logprob": -0.25}
        facts = _facts("transcript", audio, started, language=LANGUAGE, language_probability=0.99)
        return TranscriptResult(segments_frame([segment], LANGUAGE), LANGUAGE, 0.99, facts)

    def align(self, segments: pd.DataFrame, audio: np.ndarray, language: str, config=None) -> AlignmentResult:
        """Each segment's words spread evenly over it, as one sentence."""
        started = time.perf_counter()
        aligned = []
        for row in segments.itertuples(index=False):
            words = str(row.text).split()
            edges = np.linspace(row.start, row.end, len(words) + 1).round(3)
            aligned.append({"start": float(row.start), "end": float(row.end), "text": str(row.text),
                            "words": [{"word": w, "start": float(a), "end": float(b), "score": 0.9}
                                      for w, a, b in zip(words, edges[:-1], edges[1:])]})
        facts = _facts("alignment", audio, started, language=language)
        return AlignmentResult(segments_frame(aligned, language), words_frame(aligned), facts)

    def diarize(self, audio: np.ndarray, config=None) -> DiarizationResult:
        """One speaker, or two halves with a speaker each, by the audio's bytes."""
        started, seconds = time.perf_counter(), _seconds(audio)
        speakers = 1 + _seed(audio) % 2
        bounds = np.linspace(0.0, seconds, speakers + 1).round(3)
        turns = turns_frame([{"start": float(bounds[i]), "end": float(bounds[i + 1]), "speaker": f"SPEAKER_{i:02d}"}
                             for i in range(speakers)])
        return DiarizationResult(turns, _facts("diarization", audio, started, speakers=speakers))

    def speaker_embeddings(self, audio: np.ndarray, turns: pd.DataFrame, config=None) -> pd.DataFrame:
        """A random unit vector per speaker, by the audio's bytes: no two files share a voice."""
        rows = [{"speaker": str(s), "seconds": float((turns["end"] - turns["start"])[turns["speaker"] == s].sum()),
                 "model": MODEL, "embedding": _unit_vector(_seed(audio) + i).tolist()}
                for i, s in enumerate(sorted(turns["speaker"].unique()))]
        return pd.DataFrame(rows, columns=["speaker", "seconds", "model", "embedding"]).astype(
            {"speaker": "string", "seconds": "float64", "model": "string"})

    def voiceprint(self, clips: list[np.ndarray], config=None) -> tuple[np.ndarray | None, float]:
        if not clips:
            return None, 0.0
        return _unit_vector(_seed(np.concatenate(clips))), sum(map(len, clips)) / SAMPLE_RATE

    # The real engine's: they read the user's files; only a plain-text transcript or an unknown language needs
    # Whisper, which `transcribe` and `transcriber` stand in for.
    supplied_transcript = SpeechEngine.supplied_transcript
    supplied_diarization = SpeechEngine.supplied_diarization

    @property
    def config(self) -> SpeechConfig:
        return SpeechConfig()

    def transcriber(self, config=None) -> "StandInEngine":
        return self

    def language_of(self, audio: np.ndarray, config: SpeechConfig) -> tuple[str, float | None]:
        return config.language or LANGUAGE, None

    device = "cpu"

    def release(self) -> None:
        pass


class StandInWhisperXResource(WhisperXResource):
    """`WhisperXResource` with the stand-in engine; `load_audio` (and its per-run cache) is the real one."""

    @property
    def engine(self) -> StandInEngine:
        if self._engine is None:
            self._engine = StandInEngine()
        return self._engine


def assign_speakers(segments: pd.DataFrame, words: pd.DataFrame, turns: pd.DataFrame, audio_seconds: float):
    """The `combined` stage without whisperX's `assign_word_speakers`, whose module imports pyannote and torch
    (tens of seconds per run process here; a real run has them loaded already): each word takes the speaker
    of the turn holding its midpoint."""
    started = time.perf_counter()
    middle = ((words["start"] + words["end"]) / 2).to_numpy()
    index = np.searchsorted(turns["start"].to_numpy(), middle, side="right") - 1
    labelled = words.assign(speaker=turns["speaker"].to_numpy()[index.clip(0)] if len(turns) else None)
    by_segment = labelled.groupby("segment_id")["speaker"].first()
    labelled_segments = segments.assign(speaker=segments["segment_id"].map(by_segment).astype("string"))
    facts = StageFacts("combined", MODEL, MODEL, "cpu", audio_seconds, time.perf_counter() - started,
                       speakers=int(labelled["speaker"].nunique()))
    return CombinedResult(labelled_segments, labelled.astype({"speaker": "string"}), facts)


speech_assets.assign_speakers = assign_speakers
defs = Definitions(**{**{field: getattr(product.defs, field) for field in Definitions._fields},
                      "resources": {**product.defs.resources, "whisperx": StandInWhisperXResource()}})
