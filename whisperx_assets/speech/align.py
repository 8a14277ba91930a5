"""Word timings for a transcript.

Backends, all returning the same frames (sentence-level segments and words):
- `wav2vec2`: whisperX's own forced alignment (`whisperx.load_align_model` + `whisperx.align`): torchaudio
  bundles or Hugging Face CTC models. Needs the model cached or the hub; the best quality online.
- `pocketsphinx`: CMU PocketSphinx forced alignment with its bundled en-us acoustic model (English, offline).
- `whisper`: Whisper's own cross-attention word timings (faster-whisper's DTW), forced to the transcript
  text; any language the Whisper model knows, offline.

With `align_backend="auto"` the configured (or whisperX's default) wav2vec2 model is used when it loads
(`resolve_alignment` says which); otherwise pocketsphinx for English, else whisper. The backend used is recorded.
Words without timings (numbers, symbols, unknown words) get times by `interpolate_method`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd

from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.errors import ModelUnavailableError
from whisperx_assets.speech.frames import StageFacts, segments_frame, to_whisperx_result, words_frame
from whisperx_assets.speech.media import SAMPLE_RATE
from whisperx_assets.speech.models import hub_offline, resolve_device

log = logging.getLogger(__name__)

LANGUAGES_WITHOUT_SPACES = ("ja", "zh")  # as in whisperX: one "word" per character


@dataclasses.dataclass
class AlignmentResult:
    segments: pd.DataFrame
    words: pd.DataFrame
    facts: StageFacts


# --- sentence splitting without an NLTK download ---------------------------------------------------

PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")


def ensure_punkt(language: str, cache_dir: Path) -> str:
    """Make `tokenizers/punkt_tab/<lang>/` loadable so whisperX never calls `nltk.download`.

    The trained tables are used when NLTK data is installed (NLTK_DATA); otherwise an untrained Punkt
    model (empty tables: splits at sentence punctuation, knows no abbreviations) is written to the cache.
    Returns the Punkt language name.
    """
    import nltk
    from whisperx.utils import PUNKT_LANGUAGES

    punkt_lang = PUNKT_LANGUAGES.get(language, "english")
    try:
        nltk.data.find(f"tokenizers/punkt_tab/{punkt_lang}/")
        return punkt_lang
    except LookupError:
        pass
    root = cache_dir / "nltk_data"
    folder = root / "tokenizers" / "punkt_tab" / punkt_lang
    folder.mkdir(parents=True, exist_ok=True)
    for name in PUNKT_FILES:
        (folder / name).touch()
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    log.info("no trained Punkt tables for %s: using an untrained sentence splitter", punkt_lang)
    return punkt_lang


def sentence_spans(text: str, language: str, cache_dir: Path) -> list[tuple[int, int]]:
    from nltk.tokenize import PunktTokenizer

    return list(PunktTokenizer(ensure_punkt(language, cache_dir)).span_tokenize(text))


# --- backends ---------------------------------------------------------------------------------------


def _split_words(text: str, language: str) -> list[tuple[str, int, int]]:
    """(word, start char, end char) as whisperX splits: on spaces, or per character for ja/zh."""
    if language in LANGUAGES_WITHOUT_SPACES:
        return [(c, i, i + 1) for i, c in enumerate(text) if not c.isspace()]
    return [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def _pocketsphinx_word_times(audio: np.ndarray, words: list[str], decoders) -> list[tuple[float, float, float] | None]:
    """Forced alignment of `words` in `audio`; None for words not in the dictionary (or on failure).

    `decoders` are tried in order: the first allows optional silences between words (more precise), the
    second does not and finds a path where the first sometimes finds none.
    """
    keys = [re.sub(r"[^a-z']", "", w.lower()).strip("'") for w in words]
    known = [i for i, k in enumerate(keys) if k and decoders[0].lookup_word(k) is not None]
    times: list[tuple[float, float, float] | None] = [None] * len(words)
    if not known:
        return times
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()
    for decoder in decoders:
        decoder.set_align_text(" ".join(keys[i] for i in known))
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        segments = decoder.seg()
        aligned = [s for s in segments or [] if not s.word.startswith(("<", "["))]
        if len(aligned) == len(known):
            frame = 0.01  # pocketsphinx's default frame rate is 100 per second
            for i, seg in zip(known, aligned):
                times[i] = (seg.start_frame * frame, (seg.end_frame + 1) * frame, float(seg.prob))
            return times
    log.warning("pocketsphinx found no alignment for %d words", len(known))
    return times


VOICE_FRAME = SAMPLE_RATE // 100  # 10 ms


def voiced_frames(audio: np.ndarray) -> np.ndarray:
    """Per 10 ms frame of `audio`: whether it is louder than the file's noise floor by a quarter of the way to
    its loud speech (an energy detector: enough to find the silences a word must not cover)."""
    n = len(audio) // VOICE_FRAME
    if n == 0:
        return np.zeros(0, dtype=bool)
    power = np.mean(np.square(audio[: n * VOICE_FRAME].reshape(n, VOICE_FRAME), dtype=np.float64), axis=1)
    level = 10 * np.log10(power + 1e-12)
    floor, loud = max(np.percentile(level, 10), -90.0), np.percentile(level, 95)
    return level > floor + 0.25 * (loud - floor)


def clip_to_voice(starts: np.ndarray, ends: np.ndarray, voiced: np.ndarray,
                  ends_sentence: list[bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Shrink each word's span (seconds) to the voiced frames inside it: aligners stretch a turn's first word
    back over the pause before it, and a word's end over the pause after it. A span wholly in silence (an
    interpolated time) moves to the voice beside it when `ends_sentence` (per word) tells which: a sentence's last word ends where
    the voice before it ends, a sentence's first word starts where the next voice starts. Other spans with no
    voiced frame, and untimed ones, are left as they are."""
    starts, ends = starts.copy(), ends.copy()
    for i, (start, end) in enumerate(zip(starts, ends)):
        if np.isnan(start) or np.isnan(end):
            continue
        first, last = int(start * 100), int(np.ceil(end * 100))
        inside = np.flatnonzero(voiced[first:last])
        if inside.size:
            starts[i] = max(start, (first + inside[0]) / 100)
            ends[i] = min(end, (first + inside[-1] + 1) / 100)
        elif ends_sentence is not None:
            duration = end - start
            before, after = np.flatnonzero(voiced[:first]), np.flatnonzero(voiced[last:])
            if ends_sentence[i] and before.size:
                ends[i] = (before[-1] + 1) / 100
                starts[i] = max(ends[i] - duration, ends[i - 1] if i and not np.isnan(ends[i - 1]) else 0.0)
            elif (i == 0 or ends_sentence[i - 1]) and after.size:
                starts[i] = (last + after[0]) / 100
                ends[i] = starts[i] + duration
    return starts, ends


MAX_VOICE_GAP = 5  # 10 ms frames: a stop consonant's closure is silent inside a word
MAX_STRETCH = 50  # 10 ms frames a word's edge may move out to reach the voice around it


def stretch_to_voice(starts: np.ndarray, ends: np.ndarray, voiced: np.ndarray, ends_sentence: list[bool],
                     bounds: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Move a sentence's first word's start back, and its last word's end forward, to the edge of the voice
    they are part of (aligners often give a sentence's edge phones to silence), never past the neighbouring
    word, `bounds` (s) or a silence longer than MAX_VOICE_GAP frames."""
    starts, ends = starts.copy(), ends.copy()
    n = len(ends_sentence)
    for i in range(n):
        if np.isnan(starts[i]) or np.isnan(ends[i]):
            continue
        if i == 0 or ends_sentence[i - 1]:
            limit = max(bounds[0], ends[i - 1] if i and not np.isnan(ends[i - 1]) else bounds[0])
            starts[i] = _voice_edge(voiced, starts[i], -1, limit)
        if i == n - 1 or ends_sentence[i]:
            limit = min(bounds[1], starts[i + 1] if i < n - 1 and not np.isnan(starts[i + 1]) else bounds[1])
            ends[i] = _voice_edge(voiced, ends[i], +1, limit)
    return starts, ends


def _voice_edge(voiced: np.ndarray, time: float, step: int, limit: float) -> float:
    """Where the voice at `time` ends going `step` (-1 back, +1 forward), not beyond `limit` (s)."""
    frame = int(round(time * 100))
    if step < 0:
        lo, hi = max(int(np.ceil(limit * 100)), frame - MAX_STRETCH, 0), frame
    else:
        lo, hi = frame, min(int(limit * 100), frame + MAX_STRETCH, len(voiced))
    edge, gap = frame, 0
    i = frame - 1 if step < 0 else frame
    while lo <= i < hi:
        if voiced[i]:
            edge, gap = (i if step < 0 else i + 1), 0
        else:
            gap += 1
            if gap > MAX_VOICE_GAP:
                break
        i += step
    return edge / 100 if (edge - frame) * step > 0 else time


# --- which backend and model -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AlignmentChoice:
    """What a configuration aligns with (`resolve_alignment`)."""

    backend: str  # wav2vec2, pocketsphinx or whisper; "auto" while the language that decides is unknown
    model: str | None  # the backend's model; None: the wav2vec2 model is chosen by language
    source: str | None = None  # wav2vec2: "local", "hub-cache", "torch hub cache", or "hub" (downloaded)


POCKETSPHINX = AlignmentChoice("pocketsphinx", "pocketsphinx:en-us")
WHISPER = AlignmentChoice("whisper", "whisper-cross-attention")


def resolve_alignment(config: SpeechConfig, language: str | None = None, download: bool = False) -> AlignmentChoice:
    """The backend and model `config` aligns `language` with, decided without loading a model or a download.
    `download`: a wav2vec2 model that was asked for (ALIGN_BACKEND=wav2vec2 or ALIGN_MODEL) may come from the hub;
    auto's default model never does.

    auto takes the wav2vec2 model when it is here, else pocketsphinx for English, else whisper; an ALIGN_MODEL
    that cannot be used raises even under auto (a run then falls back, with a warning). Without `language`, a
    choice by language stays open: `model` None, and `backend` "auto" unless ALIGN_MODEL decides it.
    ModelUnavailableError says why the configured backend or model cannot be used."""
    wanted = config.align_backend
    if wanted == "whisper":
        return WHISPER
    if wanted == "pocketsphinx":
        return _pocketsphinx(language)
    if not config.align_model and language is None:
        return AlignmentChoice(wanted, None)
    asked = wanted == "wav2vec2" or bool(config.align_model)
    try:
        name = config.align_model or _default_wav2vec2(language)
        return AlignmentChoice("wav2vec2", name, _wav2vec2_source(name, download=download and asked))
    except ModelUnavailableError:
        if asked:
            raise
    return _offline_aligner(language)


def _offline_aligner(language: str) -> AlignmentChoice:
    """auto's aligner where no wav2vec2 model is: pocketsphinx for English, else whisper."""
    return _pocketsphinx(language) if language == "en" else WHISPER


def _pocketsphinx(language: str | None) -> AlignmentChoice:
    if language not in (None, "en"):
        raise ModelUnavailableError(f"the pocketsphinx aligner is English only; the transcript is {language!r}")
    if find_spec("pocketsphinx") is None:
        raise ModelUnavailableError("the pocketsphinx aligner needs the pocketsphinx package, which is not installed")
    return POCKETSPHINX


def _default_wav2vec2(language: str) -> str:
    from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH

    name = DEFAULT_ALIGN_MODELS_TORCH.get(language) or DEFAULT_ALIGN_MODELS_HF.get(language)
    if name is None:
        raise ModelUnavailableError(f"whisperX has no default alignment model for language {language!r}")
    return name


def _wav2vec2_source(name: str, download: bool) -> str:
    """Where the wav2vec2 model `name` loads from with no download: "local" (a folder), "hub-cache" (a Hugging
    Face id) or "torch hub cache" (a torchaudio bundle name); "hub" where it is not here and `download`, else
    ModelUnavailableError."""
    if Path(name).expanduser().is_dir():
        return "local"
    if "/" in name:
        from huggingface_hub import snapshot_download

        try:
            snapshot_download(name, local_files_only=True)
            return "hub-cache"
        except Exception as exc:
            missing = f"not in the Hugging Face cache ({type(exc).__name__})"
    else:
        import torch

        checkpoints = Path(torch.hub.get_dir()) / "checkpoints"  # where torchaudio downloads its bundles
        if any(checkpoints.glob(f"*{name.lower().split('_')[0]}*")):
            return "torch hub cache"
        missing = f"not in the torch hub cache ({checkpoints})"
    if download:
        return "hub"
    raise ModelUnavailableError(f"alignment model {name!r} is {missing}; pre-place it, or set ALIGN_MODEL to a local "
                                "wav2vec2 CTC folder")


class Aligner:
    """A loaded alignment backend; call it with a transcript's segments and the audio."""

    def __init__(self, config: SpeechConfig, language: str, whisper_model=None):
        self.language = language
        self.device, _ = resolve_device(config.device, "auto")
        self.cache_dir = config.cache_dir
        self.whisper_model = whisper_model  # the transcriber's loaded faster-whisper model, for `whisper`
        self.backend, self.model_name = self._load(config)

    @staticmethod
    def load_key(config: SpeechConfig, language: str) -> tuple:
        return (config.align_backend, config.align_model, config.device, language)

    def _load(self, config: SpeechConfig) -> tuple[str, str]:
        try:
            choice = resolve_alignment(config, self.language, download=not hub_offline())
            if choice.backend == "wav2vec2":
                self._load_wav2vec2(choice)
        except ModelUnavailableError as exc:
            if config.align_backend != "auto":
                raise
            if config.align_model:
                log.warning("%s; falling back to an offline aligner", exc)
            choice = _offline_aligner(self.language)
        if choice.backend == "pocketsphinx":
            from pocketsphinx import Decoder

            # Wide beams: with the defaults, alignments of more than ~10 s of speech find no path.
            self.decoders = [Decoder(samprate=SAMPLE_RATE, bestpath=False, loglevel="FATAL", fsgusefiller=filler,
                                     beam=1e-100, pbeam=1e-100, wbeam=1e-80) for filler in (True, False)]
        elif choice.backend == "whisper" and self.whisper_model is None:
            raise ModelUnavailableError("the whisper aligner needs the loaded Whisper model")
        return choice.backend, choice.model

    def _load_wav2vec2(self, choice: AlignmentChoice) -> None:
        import whisperx

        try:
            self.model, self.metadata = whisperx.load_align_model(
                self.language, self.device, model_name=choice.model, model_cache_only=choice.source != "hub")
        except Exception as exc:
            raise ModelUnavailableError(
                f"alignment model {choice.model!r} could not be loaded ({type(exc).__name__}: {exc}). Set ALIGN_MODEL "
                "to a local wav2vec2 CTC model folder or a cached Hugging Face id (HF_HOME, HF_TOKEN), or use "
                "ALIGN_BACKEND=pocketsphinx (English) / whisper (any language)") from exc

    def __call__(self, segments: pd.DataFrame, audio: np.ndarray, config: SpeechConfig) -> AlignmentResult:
        started = time.perf_counter()
        if self.backend == "wav2vec2":
            import whisperx

            ensure_punkt(self.language, self.cache_dir)
            transcript = to_whisperx_result(segments)["segments"]
            result = whisperx.align(transcript, self.model, self.metadata, audio, self.device,
                                    interpolate_method=config.interpolate_method,
                                    return_char_alignments=config.return_char_alignments)
            aligned = result["segments"]
        else:
            voiced = voiced_frames(audio)
            aligned = [s for row in segments.itertuples(index=False)
                       for s in self._align_segment(row, audio, voiced, config)]
        facts = StageFacts(stage="alignment", model=self.model_name, backend=self.backend, device=self.device,
                           language=self.language, audio_seconds=len(audio) / SAMPLE_RATE,
                           wall_seconds=time.perf_counter() - started)
        return AlignmentResult(segments_frame(aligned, self.language), words_frame(aligned), facts)

    def _align_segment(self, row, audio: np.ndarray, voiced: np.ndarray, config: SpeechConfig) -> list[dict]:
        text = str(row.text)
        words = _split_words(text, self.language)
        if not words:
            return []
        first, last = int(row.start * SAMPLE_RATE), int(row.end * SAMPLE_RATE)
        chunk = audio[first:last]
        if self.backend == "pocketsphinx":
            times = _pocketsphinx_word_times(chunk, [w for w, _, _ in words], self.decoders)
        else:
            times = self._whisper_word_times(chunk, text, len(words))
        frame = pd.DataFrame({
            "start": [t[0] + row.start if t else np.nan for t in times],
            "end": [t[1] + row.start if t else np.nan for t in times],
            "score": [t[2] if t else np.nan for t in times],
        })
        if frame["start"].isna().all() and config.interpolate_method != "ignore":
            # Nothing aligned (no known word, or no path): spread the words over the segment by length.
            edges = row.start + (row.end - row.start) * np.cumsum([0] + [len(w) + 1 for w, _, _ in words]) / (len(text) + 1)
            frame["start"], frame["end"] = edges[:-1], edges[1:]
        elif config.interpolate_method != "ignore":
            from whisperx.utils import interpolate_nans

            frame["start"] = interpolate_nans(frame["start"], method=config.interpolate_method)
            frame["end"] = interpolate_nans(frame["end"], method=config.interpolate_method)
        spans = sentence_spans(text, self.language, self.cache_dir)
        members = [[i for i, (_, c0, c1) in enumerate(words) if c0 >= s_start and c1 <= s_end] for s_start, s_end in spans]
        ends_sentence = [False] * len(words)
        for member in filter(None, members):
            ends_sentence[member[-1]] = True
        starts, ends = clip_to_voice(frame["start"].to_numpy(float), frame["end"].to_numpy(float), voiced, ends_sentence)
        starts, ends = stretch_to_voice(starts, ends, voiced, ends_sentence, (row.start, row.end))
        word_dicts = [{"word": w, "start": s, "end": e, "score": sc}
                      for (w, _, _), s, e, sc in zip(words, starts, ends, frame["score"])]
        # One output segment per sentence, as whisperX's own aligner does.
        sentences = []
        for (s_start, s_end), member in zip(spans, members):
            timed = [word_dicts[i] for i in member if not np.isnan(word_dicts[i]["start"])]
            sentences.append({
                "text": text[s_start:s_end],
                "start": round(float(timed[0]["start"]), 3) if timed else row.start,
                "end": round(float(timed[-1]["end"]), 3) if timed else row.end,
                "words": [{k: (round(float(v), 3) if k != "word" and not np.isnan(v) else v) for k, v in word_dicts[i].items()}
                          for i in member],
            })
        return sentences

    def _whisper_word_times(self, chunk: np.ndarray, text: str, n_words: int) -> list[tuple[float, float, float] | None]:
        from faster_whisper.tokenizer import Tokenizer
        from whisperx.audio import N_SAMPLES

        from whisperx_assets.speech.transcribe import encode_window

        model = self.whisper_model
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=self.language)
        alignment = model.find_alignment(tokenizer, [tokenizer.encode(" " + text.strip())], encode_window(model, chunk),
                                         num_frames=len(chunk[:N_SAMPLES]) // 160)[0]
        whisper_words = [w for w in alignment if w["word"].strip()]
        if len(whisper_words) != n_words:
            # Whisper's word split differs from the whitespace split (rare): leave these to interpolation.
            return [None] * n_words
        return [(float(w["start"]), float(w["end"]), float(w["probability"])) for w in whisper_words]
