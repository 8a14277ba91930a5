"""Grouping speaker embeddings into speakers, and estimating how many there are when not told."""

from __future__ import annotations

import numpy as np


# Centroids of one voice's clusters measured 0.93-0.98 apart on real telephone speech; different voices
# 0.85 (pyannote's sample) and 0.53-0.82 (generated voices). See bench/speech_quality.py.
MERGE_SIMILARITY = 0.9


def global_speakers(embeddings: np.ndarray, train: np.ndarray, active: np.ndarray, chunk_starts: np.ndarray,
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

    labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(eigenvectors[:, :k]).astype(np.int64)
    return merge_similar(X, labels, lo)


def merge_similar(X: np.ndarray, labels: np.ndarray, lo: int, threshold: float = MERGE_SIMILARITY) -> np.ndarray:
    """Merge clusters whose centroids are more similar than `threshold` (most similar pair first), keeping at
    least `lo`: the eigengap splits one real voice into several when its embeddings spread (telephone speech)."""
    labels = labels.copy()
    while (k := int(labels.max()) + 1) > max(lo, 1):
        centroids = np.stack([X[labels == i].mean(axis=0) for i in range(k)])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        similarity = centroids @ centroids.T
        np.fill_diagonal(similarity, -1.0)
        a, b = np.unravel_index(np.argmax(similarity), similarity.shape)
        if similarity[a, b] <= threshold:
            break
        labels[labels == max(a, b)] = min(a, b)
        _, labels = np.unique(labels, return_inverse=True)
    return labels.astype(np.int64)


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
