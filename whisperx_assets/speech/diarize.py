"""Speaker diarization: who spoke when, as a table of turns.

Two backends behind one `Diarizer`:

* `pyannote-pretrained:<id>`: pyannote's pretrained pipeline (`SpeechConfig.diarization_model`, by default
  the gated `pyannote/speaker-diarization-community-1`). Used when a Hugging Face token is configured (it may
  then download) or when the model is already in the Hugging Face cache (then loaded from there, offline).
* `offline:whisperx-segmentation+resemblyzer`: built here from models that ship inside packages, so it needs
  no hub at all: the pyannote segmentation model bundled with whisperX (local speaker activity in 5 s
  windows) and Resemblyzer's GE2E d-vector encoder (speaker embeddings), glued with pyannote.audio's building
  blocks. The speaker count, when not given, is estimated from the embeddings (see `cluster_embeddings`).

Importing this module is cheap: torch, pyannote and resemblyzer load in `load_diarizer`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.errors import ModelUnavailableError
from whisperx_assets.speech.media import SAMPLE_RATE

COLUMNS = ("start", "end", "speaker")
OFFLINE_BACKEND = "offline:whisperx-segmentation+resemblyzer"
PRETRAINED_PREFIX = "pyannote-pretrained:"


def empty_turns() -> pd.DataFrame:
    return pd.DataFrame({"start": pd.Series(dtype="float64"), "end": pd.Series(dtype="float64"),
                         "speaker": pd.Series(dtype="string")})


def _turns_frame(rows: list[tuple[float, float, object]]) -> pd.DataFrame:
    """(start, end, label) rows -> the public table: sorted, labels renamed SPEAKER_00.. by first appearance."""
    if not rows:
        return empty_turns()
    rows = sorted(rows, key=lambda r: (r[0], r[1]))
    names: dict[object, str] = {}
    for _, _, label in rows:
        names.setdefault(label, f"SPEAKER_{len(names):02d}")
    return pd.DataFrame({
        "start": np.array([r[0] for r in rows], dtype=np.float64),
        "end": np.array([r[1] for r in rows], dtype=np.float64),
        "speaker": pd.array([names[r[2]] for r in rows], dtype="string"),
    })


@dataclass
class Diarizer:
    """Callable diarizer; `backend` says which pipeline runs, `device` where."""

    backend: str
    device: str
    _run: Callable[[np.ndarray, int | None, int | None, int | None], pd.DataFrame] = field(repr=False)
    config: SpeechConfig | None = field(default=None, repr=False)

    def __call__(self, audio: np.ndarray, num_speakers: int | None = None, min_speakers: int | None = None,
                 max_speakers: int | None = None) -> pd.DataFrame:
        """Diarize 16 kHz mono float32 `audio`; returns columns start, end (float64 s), speaker (string).

        Speaker counts not given here default to the configuration's; `num_speakers` overrides the bounds.
        """
        if self.config is not None and num_speakers is None and min_speakers is None and max_speakers is None:
            num_speakers, min_speakers, max_speakers = (
                self.config.num_speakers, self.config.min_speakers, self.config.max_speakers)
        num_speakers, min_speakers, max_speakers = _check_counts(num_speakers, min_speakers, max_speakers)
        audio = np.asarray(audio)
        if audio.ndim == 2 and 1 in audio.shape:
            audio = audio.reshape(-1)
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if not np.all(np.isfinite(audio)):
            raise ValueError("audio contains NaN or infinite samples")
        if audio.size == 0 or not np.any(audio):
            return empty_turns()
        return self._run(audio, num_speakers, min_speakers, max_speakers)


def _check_counts(num, lo, hi):
    for name, value in (("num_speakers", num), ("min_speakers", lo), ("max_speakers", hi)):
        if value is not None and (int(value) != value or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if num is not None:
        return int(num), int(num), int(num)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"min_speakers ({lo}) must not exceed max_speakers ({hi})")
    return None, (int(lo) if lo else None), (int(hi) if hi else None)


def _no_telemetry() -> None:
    # pyannote.audio 4 sends usage telemetry unless told otherwise before import; an explicit setting wins.
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")


def _resolve_device(config: SpeechConfig) -> str:
    import torch

    if config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        raise ModelUnavailableError("device='cuda' was requested for diarization but CUDA is not available")
    return f"cuda:{config.device_index}"


def load_diarizer(config: SpeechConfig) -> Diarizer:
    """The pretrained pyannote pipeline when a token or a cached copy makes it usable, else the offline one.

    Without a token and without a cached (or local-path) model nothing touches the network. With a token the
    pretrained pipeline is fetched; if that fails, `ModelUnavailableError` says how to fix it.
    """
    _no_telemetry()
    device = _resolve_device(config)
    model = (config.diarization_model or "").strip()
    if model.lower() in ("", "offline"):
        return _offline_diarizer(config, device)
    if Path(model).expanduser().exists():  # a local copy of a pipeline (folder or config.yaml)
        return _pretrained_diarizer(config, device, Path(model).expanduser(), token=config.hf_token)
    if config.hf_token:
        return _pretrained_diarizer(config, device, model, token=config.hf_token)
    cached = cached_pipeline(model)
    if cached is not None:  # loaded from its folder, so pyannote has no reason to ask the hub
        return _pretrained_diarizer(config, device, cached, token=None, name=model)
    return _offline_diarizer(config, device)


# ---------------------------------------------------------------------------------------------------------
# Pretrained pyannote pipeline


def cached_pipeline(repo_id: str, cache_dir: str | Path | None = None) -> Path | None:
    """Folder of `repo_id` in the Hugging Face cache (HF_HOME / HF_HUB_CACHE), or None; never networked."""
    if repo_id.count("/") != 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, local_files_only=True, cache_dir=cache_dir))
    except Exception:  # not cached, or an invalid id: either way, not usable offline
        return None
    return folder if (folder / "config.yaml").is_file() else None


def _unavailable(model: str, error: BaseException, local: bool) -> ModelUnavailableError:
    if local:
        fix = (f"point DIARIZATION_MODEL at a folder holding a complete pyannote pipeline (config.yaml and the "
               f"models it names), or set DIARIZATION_MODEL=offline to use the offline diarization pipeline.")
    else:
        fix = (f"set HF_TOKEN to a Hugging Face token that can read it, accept its licence at "
               f"https://huggingface.co/{model} and allow access to huggingface.co; or pre-place the model in the "
               f"Hugging Face cache (HF_HOME) or point DIARIZATION_MODEL at a local copy. To use the offline "
               f"diarization pipeline instead, unset HF_TOKEN (with no cached copy) or set DIARIZATION_MODEL=offline.")
    return ModelUnavailableError(
        f"cannot load the diarization pipeline {model!r} ({type(error).__name__}: {error}). To fix: {fix}")


def _pretrained_diarizer(config: SpeechConfig, device: str, source: str | Path, token: str | None,
                         name: str | None = None) -> Diarizer:
    name = name or str(source)
    try:
        import torch
        from pyannote.audio import Pipeline

        pipeline = Pipeline.from_pretrained(source if isinstance(source, str) else str(source), token=token)
        if pipeline is None:  # pyannote returns None when the hub refuses the download
            raise RuntimeError("the hub refused the download (gated model or invalid token)")
        pipeline.to(torch.device(device))
    except ModelUnavailableError:
        raise
    except Exception as error:
        raise _unavailable(name, error, local=Path(name).expanduser().exists()) from error

    def run(audio, num_speakers, min_speakers, max_speakers):
        import torch

        output = pipeline({"waveform": torch.from_numpy(audio)[None], "sample_rate": SAMPLE_RATE},
                          num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers)
        # pyannote 4 returns DiarizeOutput; 3.x pipelines loaded by 4 may return the Annotation itself.
        annotation = getattr(output, "speaker_diarization", output)
        return _turns_frame([(s.start, s.end, label) for s, _, label in annotation.itertracks(yield_label=True)])

    return Diarizer(PRETRAINED_PREFIX + name, device, run, config)


# ---------------------------------------------------------------------------------------------------------
# Offline pipeline


def bundled_segmentation_path() -> Path:
    """whisperX's copy of pyannote/segmentation (PyanNet, 3 local speakers per 5 s window).

    Located without importing whisperx (its import costs seconds and pulls in the ASR stack).
    """
    from importlib.util import find_spec

    spec = find_spec("whisperx")
    path = Path(spec.origin).parent / "assets" / "pytorch_model.bin" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ModelUnavailableError("the offline diarization pipeline needs whisperx's bundled segmentation model "
                                    "(whisperx/assets/pytorch_model.bin): install whisperx==3.8.6")
    return path


def _offline_diarizer(config: SpeechConfig, device: str) -> Diarizer:
    try:
        pipeline = OfflineDiarization(device)
    except ModelUnavailableError:
        raise
    except Exception as error:
        raise ModelUnavailableError(f"cannot load the offline diarization models ({type(error).__name__}: {error}); "
                                    "check that whisperx and resemblyzer are installed") from error
    return Diarizer(OFFLINE_BACKEND, device, pipeline, config)


class OfflineDiarization:
    """Segmentation -> per-window speaker embeddings -> clustering -> reconstruction (pyannote's recipe).

    pyannote's own `SpeakerDiarization` insists on loading a PLDA and a pyannote-format embedding model from
    the hub, so the same steps are assembled here from its public building blocks instead.
    """

    segmentation_threshold = 0.5  # onset of the segmentation model's per-speaker activations
    min_clean_ratio = 0.2  # a window's speaker needs this share of the window alone to train the clustering
    min_embed_seconds = 0.3  # shorter speech gets no embedding (and no speaker from this window)
    loudness_dbfs = -30.0  # Resemblyzer was trained on speech normalised to -30 dBFS
    min_duration_off = 0.5  # pauses within a turn (sentence breaks) are bridged
    min_duration_on = 0.1  # slivers at turn changes (segmentation flicker) are dropped

    def __init__(self, device: str = "cpu"):
        _no_telemetry()
        import torch
        from pyannote.audio import Inference, Model
        from resemblyzer import VoiceEncoder

        self.device = device
        self._torch = torch
        model = Model.from_pretrained(str(bundled_segmentation_path()))
        if model is None:
            raise ModelUnavailableError("pyannote could not read whisperx's bundled segmentation model")
        model.eval()
        self._frames = model.receptive_field
        self._duration = float(model.specifications.duration)
        self._segmentation = Inference(model, duration=self._duration, step=0.1 * self._duration,
                                       skip_aggregation=True, batch_size=32, device=torch.device(device))
        self._encoder = VoiceEncoder(device=device, verbose=False)
        self._encoder.eval()

    def __call__(self, audio: np.ndarray, num_speakers: int | None = None, min_speakers: int | None = None,
                 max_speakers: int | None = None) -> pd.DataFrame:
        from pyannote.audio.pipelines.utils.diarization import SpeakerDiarizationMixin as Mixin
        from pyannote.audio.utils.signal import binarize
        from pyannote.core import SlidingWindowFeature

        waveform = self._torch.from_numpy(audio)[None]
        segmentations = self._segmentation({"waveform": waveform, "sample_rate": SAMPLE_RATE})
        binarized = binarize(segmentations, onset=self.segmentation_threshold, initial_state=False)
        count = Mixin.speaker_count(binarized, self._frames, warm_up=(0.0, 0.0))
        if np.nanmax(count.data) == 0:
            return empty_turns()

        embeddings, clean_ratio = self._embeddings(audio, binarized, count)
        active = np.nansum(binarized.data, axis=1) > 0  # (chunks, local speakers)
        train = (clean_ratio >= self.min_clean_ratio) & ~np.isnan(embeddings[..., 0])
        chunk_starts = np.array([binarized.sliding_window[c].start for c in range(len(binarized))])
        hard = assign_speakers(embeddings, train, active, chunk_starts, self._duration,
                               num_speakers, min_speakers, max_speakers)
        if hard.max() < 0:  # speech too short to embed anywhere: one speaker
            hard = np.where(active, 0, -2)
        num_clusters = int(hard.max()) + 1

        # Never more simultaneous speakers than speakers found (otherwise pyannote invents a padded one).
        count.data = np.minimum(count.data, num_clusters).astype(np.int8)
        clustered = np.full(segmentations.data.shape[:2] + (num_clusters,), np.nan)
        for c, (clusters, chunk_scores) in enumerate(zip(hard, segmentations.data)):
            for k in np.unique(clusters[clusters >= 0]):
                clustered[c, :, k] = np.max(chunk_scores[:, clusters == k], axis=1)
        discrete = Mixin.to_diarization(SlidingWindowFeature(clustered, segmentations.sliding_window), count)
        annotation = Mixin.to_annotation(discrete, min_duration_on=self.min_duration_on,
                                         min_duration_off=self.min_duration_off)
        return _turns_frame([(s.start, s.end, label) for s, _, label in annotation.itertracks(yield_label=True)])

    def _embeddings(self, audio: np.ndarray, binarized, count) -> tuple[np.ndarray, np.ndarray]:
        """One d-vector per (window, local speaker) from the frames where that speaker talks alone.

        The mel spectrogram is computed once for the whole file and the frames of each speaker are gathered
        from it, instead of re-encoding each overlapping 5 s window's audio.
        """
        from resemblyzer.hparams import mel_window_step, partials_n_frames

        data = np.nan_to_num(binarized.data).astype(bool)  # (chunks, frames, speakers)
        num_chunks, num_frames, num_speakers = data.shape
        clean = data & (data.sum(axis=2, keepdims=True) == 1)
        clean_ratio = clean.sum(axis=1) / num_frames

        # Loudness of the speech (not of the silences), as Resemblyzer's own preprocessing does, from the
        # energy of 10 ms frames where the segmentation hears someone.
        hop = mel_window_step / 1000
        step = int(SAMPLE_RATE * hop)
        energy = np.square(audio[: len(audio) // step * step], dtype=np.float64).reshape(-1, step).mean(axis=1)
        frames = count.sliding_window
        at = np.round(((np.arange(len(energy)) + 0.5) * hop - frames.start - frames.duration / 2) / frames.step)
        speech = count.data[np.clip(at.astype(int), 0, len(count) - 1), 0] > 0
        level = np.sqrt(energy[speech].mean()) if speech.any() else 0.0
        gain = 10 ** (self.loudness_dbfs / 20) / level if level > 1e-6 else 1.0
        mel = mel_spectrogram(audio * np.float32(gain))  # (mel frames, 40), one frame per 10 ms
        half = partials_n_frames // 2
        min_mel = int(self.min_embed_seconds / hop)

        # Segmentation frame for each mel frame of a window (same for every window).
        offsets = np.arange(int(round(self._duration / hop)))
        centre = self._frames.start + self._frames.duration / 2
        frame_of = np.clip(np.round((offsets * hop - centre) / self._frames.step).astype(int), 0, num_frames - 1)

        sums = np.zeros((num_chunks * num_speakers, 256), dtype=np.float64)
        partials, owners = [], []

        def encode():  # in batches, so long files never hold all partials in memory
            torch = self._torch
            with torch.inference_mode():
                vectors = self._encoder(torch.from_numpy(np.stack(partials)).to(self.device)).cpu().numpy()
            np.add.at(sums, np.asarray(owners), vectors)
            partials.clear()
            owners.clear()

        for c in range(num_chunks):
            first = int(round(binarized.sliding_window[c].start / hop))
            window = mel[first: first + len(offsets)]
            for s in range(num_speakers):
                if clean_ratio[c, s] == 0:
                    continue
                selected = window[clean[c, frame_of[: len(window)], s]]
                if len(selected) < min_mel:
                    continue
                # 1.6 s partials with 50% overlap; short speech is tiled rather than zero-padded, since
                # trailing silence would dominate the LSTM's final state.
                if len(selected) < partials_n_frames:
                    reps = int(np.ceil(partials_n_frames / len(selected)))
                    selected = np.tile(selected, (reps, 1))[:partials_n_frames]
                starts = list(range(0, len(selected) - partials_n_frames + 1, half))
                if starts[-1] + partials_n_frames < len(selected):
                    starts.append(len(selected) - partials_n_frames)
                for start in starts:
                    partials.append(selected[start: start + partials_n_frames])
                    owners.append(c * num_speakers + s)
                if len(partials) >= 256:
                    encode()
        if partials:
            encode()

        embeddings = np.full(sums.shape, np.nan, dtype=np.float32)
        norms = np.linalg.norm(sums, axis=1)
        used = norms > 0
        embeddings[used] = sums[used] / norms[used, None]
        return embeddings.reshape(num_chunks, num_speakers, -1), clean_ratio


def mel_spectrogram(wav: np.ndarray, block_frames: int = 60_000) -> np.ndarray:
    """Resemblyzer's `wav_to_mel_spectrogram`, computed in 10-minute blocks to bound memory on long files.

    Same frames as librosa's centred STFT (zero padding of half a window each side), so the same values.
    """
    import librosa
    from resemblyzer.hparams import mel_n_channels, mel_window_length, mel_window_step, sampling_rate

    n_fft = int(sampling_rate * mel_window_length / 1000)
    hop = int(sampling_rate * mel_window_step / 1000)
    padded = np.pad(wav, n_fft // 2)
    total = 1 + len(wav) // hop
    blocks = []
    for first in range(0, total, block_frames):
        last = min(total, first + block_frames)
        block = padded[first * hop: (last - 1) * hop + n_fft]
        blocks.append(librosa.feature.melspectrogram(y=block, sr=sampling_rate, n_fft=n_fft, hop_length=hop,
                                                     n_mels=mel_n_channels, center=False).astype(np.float32).T)
    return np.concatenate(blocks)


# ---------------------------------------------------------------------------------------------------------
# Clustering and speaker count


def assign_speakers(embeddings: np.ndarray, train: np.ndarray, active: np.ndarray, chunk_starts: np.ndarray,
                    chunk_duration: float, num_speakers: int | None = None, min_speakers: int | None = None,
                    max_speakers: int | None = None, max_train: int = 600) -> np.ndarray:
    """Global speaker index for each (window, local speaker): -2 when inactive or not embeddable.

    Clusters the reliable embeddings (`train`), then maps every embedded local speaker to the closest
    centroid. Local speakers of one window are different people to the segmentation model, so they get
    different global speakers (Hungarian assignment) unless there are fewer speakers than local speakers.
    """
    from scipy.optimize import linear_sum_assignment

    num_chunks, num_local, _ = embeddings.shape
    hard = np.full((num_chunks, num_local), -2, dtype=np.int64)
    valid = active & ~np.isnan(embeddings[..., 0])
    if not valid.any():
        return hard
    chunk_idx, local_idx = np.nonzero(train & valid)
    if len(chunk_idx) == 0:  # nothing long enough: cluster whatever could be embedded
        chunk_idx, local_idx = np.nonzero(valid)
    if len(chunk_idx) > max_train:  # long files: an even subsample keeps the count estimate affordable
        keep = np.linspace(0, len(chunk_idx) - 1, max_train).round().astype(int)
        chunk_idx, local_idx = chunk_idx[keep], local_idx[keep]
    X = embeddings[chunk_idx, local_idx].astype(np.float64)
    labels = cluster_embeddings(X, chunk_starts[chunk_idx], chunk_duration, num_speakers, min_speakers,
                                max_speakers, cannot_link=chunk_idx[:, None] == chunk_idx[None, :])
    k = int(labels.max()) + 1
    centroids = np.stack([X[labels == i].mean(axis=0) for i in range(k)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    for c in range(num_chunks):
        locals_ = np.flatnonzero(valid[c])
        if len(locals_) == 0:
            continue
        scores = embeddings[c, locals_] @ centroids.T
        if len(locals_) <= k:
            rows, cols = linear_sum_assignment(scores, maximize=True)
            hard[c, locals_[rows]] = cols
        else:  # more local speakers than speakers found: plain argmax
            hard[c, locals_] = np.argmax(scores, axis=1)
    return hard


def cluster_embeddings(X: np.ndarray, times: np.ndarray, window: float, num_speakers: int | None = None,
                       min_speakers: int | None = None, max_speakers: int | None = None,
                       cannot_link: np.ndarray | None = None, max_auto_speakers: int = 10) -> np.ndarray:
    """Cluster unit-norm embeddings taken from windows starting at `times` (each `window` seconds long).

    The speaker count, unless given, comes from the largest eigengap of the Laplacian of a p-nearest-neighbour
    graph, with p auto-tuned (NME-SC, Park et al. 2019: the p minimising p / (eigengap / largest eigenvalue)).
    One fixed similarity threshold cannot fit both synthetic voices (tight, far apart) and real telephone
    speech (loose, close together); the eigengap measures structure, not absolute distance.

    Windows overlapping in time share audio, so their embeddings are near-duplicates: as graph neighbours they
    would make every speech turn its own tight cluster. Only embeddings from disjoint stretches of audio are
    allowed to be neighbours, so similarity has to come from the voice, not from shared samples.
    """
    n = len(X)
    lo, hi = (num_speakers, num_speakers) if num_speakers else (min_speakers or 1, max_speakers or max_auto_speakers)
    hi = min(hi, n)
    lo = min(lo, hi)
    if hi == 1:
        return np.zeros(n, dtype=np.int64)

    similarity = X @ X.T
    # Short files have few disjoint pairs: accept half-overlapping windows before giving up on the graph.
    for separation in (window, window / 2):
        disjoint = np.abs(times[:, None] - times[None, :]) >= separation
        partners = disjoint.sum(axis=1)
        if n >= 8 and np.mean(partners >= 4) >= 0.9:
            break
    else:
        return _cluster_short(X, lo, hi, cannot_link)

    # A speaker the estimate can trust needs a few embeddings of their own.
    auto_hi = max(1, min(max_auto_speakers, n // 3, n - 1))
    # p = 2 graphs are near-chains whose eigengaps are noise, hence p from 3.
    p_min, p_max = 3, max(4, min(int(0.25 * np.median(partners)), 40))
    best = None
    for p in sorted(set(np.linspace(p_min, p_max, min(p_max - p_min + 1, 20)).round().astype(int))):
        laplacian = _knn_laplacian(similarity, disjoint, p)
        eigenvalues, eigenvectors = np.linalg.eigh(laplacian)
        gaps = np.diff(eigenvalues[: max(hi, auto_hi) + 1])  # gaps[k-1]: between k-th and (k+1)-th smallest
        k = lo if lo == hi else 1 + int(np.argmax(gaps[:auto_hi]))
        ratio = p / (gaps[k - 1] / max(eigenvalues[-1], 1e-10) + 1e-10)
        if best is None or ratio < best[0]:
            best = (ratio, k, eigenvectors)
    _, k, eigenvectors = best
    k = int(np.clip(k, lo, hi))  # bounds given by the caller win over the estimate, as in pyannote
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(eigenvectors[:, :k]).astype(np.int64)


def _knn_laplacian(similarity: np.ndarray, allowed: np.ndarray, p: int) -> np.ndarray:
    """Unnormalised Laplacian of the symmetrised graph linking each point to its p most similar allowed ones."""
    masked = np.where(allowed, similarity, -np.inf)
    neighbours = np.argsort(-masked, axis=1)[:, :p]
    affinity = np.zeros_like(similarity)
    rows = np.repeat(np.arange(len(similarity)), p)
    affinity[rows, neighbours.ravel()] = np.isfinite(masked[rows, neighbours.ravel()])
    affinity = (affinity + affinity.T) / 2
    return np.diag(affinity.sum(axis=1)) - affinity


def _cluster_short(X: np.ndarray, lo: int, hi: int, cannot_link: np.ndarray | None) -> np.ndarray:
    """Too little audio for the graph (every window overlaps every other): trust the segmentation model.

    Its local speakers within one 5 s window are distinct people, so the most local speakers seen in one
    window is the count; agglomerative clustering that keeps such pairs apart does the grouping.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n = len(X)
    if cannot_link is None:
        cannot_link = np.zeros((n, n), dtype=bool)
    local_max = int(cannot_link.sum(axis=1).max()) + 1
    k = int(np.clip(local_max, lo, hi))
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    distance = np.clip(1.0 - X @ X.T, 0.0, 2.0)
    distance[cannot_link] = 2.0
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="average")
    labels = fcluster(tree, k, criterion="maxclust") - 1
    _, labels = np.unique(labels, return_inverse=True)
    return labels.astype(np.int64)
