"""Diarization without the hub: whisperX's bundled pyannote segmentation model (local speaker activity in 5 s
windows), Resemblyzer's GE2E d-vectors (speaker embeddings) and `clustering`, glued with pyannote.audio's
building blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from whisperx_assets.speech.diarization.clustering import global_speakers
from whisperx_assets.speech.errors import ModelUnavailableError
from whisperx_assets.speech.media import SAMPLE_RATE


def load(device: str) -> OfflineDiarization:
    try:
        return OfflineDiarization(device)
    except ModelUnavailableError:
        raise
    except Exception as error:
        raise ModelUnavailableError(f"cannot load the offline diarization models ({type(error).__name__}: {error}); "
                                    "check that whisperx and resemblyzer are installed") from error


def bundled_segmentation_path() -> Path:
    """whisperX's copy of pyannote/segmentation (PyanNet, 3 local speakers per 5 s window)."""
    return _installed_file("whisperx", "assets/pytorch_model.bin", "whisperx's bundled segmentation model "
                           "(whisperx/assets/pytorch_model.bin): install whisperx==3.8.6")


def voice_encoder_path() -> Path:
    """Resemblyzer's voice encoder weights."""
    return _installed_file("resemblyzer", "pretrained.pt", "resemblyzer with its pretrained.pt")


def _installed_file(module: str, relative: str, needed: str) -> Path:
    """A file of an installed package, located without importing it (whisperx's import costs seconds and pulls
    in the ASR stack)."""
    from importlib.util import find_spec

    spec = find_spec(module)
    path = Path(spec.origin).parent / relative if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ModelUnavailableError(f"the offline diarization pipeline needs {needed}")
    return path


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
                 max_speakers: int | None = None):
        """Speaker turns of 16 kHz mono float32 `audio`, as a pyannote Annotation."""
        from pyannote.audio.pipelines.utils.diarization import SpeakerDiarizationMixin as Mixin
        from pyannote.audio.utils.signal import binarize
        from pyannote.core import Annotation, SlidingWindowFeature

        waveform = self._torch.from_numpy(audio)[None]
        segmentations = self._segmentation({"waveform": waveform, "sample_rate": SAMPLE_RATE})
        binarized = binarize(segmentations, onset=self.segmentation_threshold, initial_state=False)
        count = Mixin.speaker_count(binarized, self._frames, warm_up=(0.0, 0.0))
        if np.nanmax(count.data) == 0:
            return Annotation()

        embeddings, clean_ratio = self._embeddings(audio, binarized, count)
        active = np.nansum(binarized.data, axis=1) > 0  # (chunks, local speakers)
        train = (clean_ratio >= self.min_clean_ratio) & ~np.isnan(embeddings[..., 0])
        chunk_starts = np.array([binarized.sliding_window[c].start for c in range(len(binarized))])
        hard = global_speakers(embeddings, train, active, chunk_starts, self._duration,
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
        return Mixin.to_annotation(discrete, min_duration_on=self.min_duration_on,
                                   min_duration_off=self.min_duration_off)

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
