"""Clustering and the speaker-count estimate on synthetic embeddings: no models."""

from __future__ import annotations

import numpy as np
import pytest

from whisperx_assets.speech.diarization.clustering import cluster_embeddings


def _synthetic_embeddings(num_speakers: int, seed: int = 0):
    """One centre per speaker, turns of 3 s, a window every 0.5 s.

    Windows of one turn share a turn-specific offset, as real windows share audio: the estimate must not
    mistake turns for speakers.
    """
    rng = np.random.default_rng(seed)
    dimension = 64
    centres = rng.normal(size=(num_speakers, dimension)) / np.sqrt(dimension)
    times = np.arange(0, 60, 0.5)
    turn = (times // 3).astype(int)
    speaker = turn % num_speakers
    offsets = rng.normal(scale=0.3 / np.sqrt(dimension), size=(turn.max() + 1, dimension))
    X = centres[speaker] + offsets[turn] + rng.normal(scale=0.1 / np.sqrt(dimension), size=(len(times), dimension))
    return X / np.linalg.norm(X, axis=1, keepdims=True), times, speaker


@pytest.mark.parametrize("num_speakers", [1, 2, 3, 5])
def test_cluster_embeddings_estimates_the_count(num_speakers):
    X, times, speaker = _synthetic_embeddings(num_speakers)
    labels = cluster_embeddings(X, times, window=5.0)
    assert len(set(labels)) == num_speakers
    # same partition up to renaming
    assert len(set(zip(labels, speaker))) == num_speakers


def test_cluster_embeddings_honours_bounds():
    X, times, _ = _synthetic_embeddings(3)
    assert len(set(cluster_embeddings(X, times, 5.0, num_speakers=2))) == 2
    assert len(set(cluster_embeddings(X, times, 5.0, max_speakers=2))) == 2
    assert len(set(cluster_embeddings(X, times, 5.0, min_speakers=4))) == 4
