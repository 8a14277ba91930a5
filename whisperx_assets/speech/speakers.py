"""Who is speaking: one embedding per diarized speaker, voiceprints of enrolled people, names by similarity, and
voice ids that stay the same across files.

Embeddings are Resemblyzer's GE2E d-vectors (the offline diarization pipeline's embedding model, bundled with
the package: no hub), one unit vector per speaker from the stretches where that speaker talks alone. Every
embedding of a collection comes from this one model, whichever pipeline diarized the file, so they compare.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from whisperx_assets.speech.media import SAMPLE_RATE

EMBEDDING_MODEL = "resemblyzer-ge2e-256"
# Cosine similarities, calibrated on generated voices separate from the test voices (bench/speaker_id.py,
# bench/RESULTS.md): a speaker is named when its best voiceprint clears NAME_THRESHOLD (the middle of 0.86-0.93,
# where every enrolled speaker got their name and nobody else any); speakers of different files share a voice id
# when they are at least VOICE_THRESHOLD alike (best F1 of purity and inverse purity). Generated voices vary less
# between files than real ones: expect real speakers to be named less often and split into more voices.
NAME_THRESHOLD = 0.895
VOICE_THRESHOLD = 0.92
MIN_SPEECH_SECONDS = 0.5  # less speech alone gives no embedding (too little to tell voices apart)
VOICE_ID = "VOICE_{:04d}"

EMBEDDING_DTYPES = {"speaker": "string", "seconds": "float64", "model": "string"}  # + "embedding": list of floats
NAME_DTYPES = {"speaker": "string", "label": "string", "name": "string", "voice_id": "string",
               "similarity": "float64", "named_by": "string"}


def solo_spans(turns: pd.DataFrame) -> dict[str, list[tuple[float, float]]]:
    """{speaker: the stretches of its turns where no other speaker talks}, from a turns frame."""
    edges = sorted({float(t) for t in turns["start"]} | {float(t) for t in turns["end"]})
    spans: dict[str, list[tuple[float, float]]] = {str(s): [] for s in turns["speaker"].unique()}
    for start, end in zip(edges, edges[1:]):
        middle = (start + end) / 2
        talking = turns[(turns["start"] <= middle) & (turns["end"] > middle)]["speaker"].unique()
        if len(talking) == 1:
            spans[str(talking[0])].append((start, end))
    return spans


class SpeakerEncoder:
    """Resemblyzer's voice encoder over chosen stretches of a recording."""

    loudness_dbfs = -30.0  # Resemblyzer was trained on speech normalised to -30 dBFS

    def __init__(self, device: str = "cpu"):
        import torch
        from resemblyzer import VoiceEncoder

        self.device, self._torch = device, torch
        self._encoder = VoiceEncoder(device=device, verbose=False)
        self._encoder.eval()

    def embed(self, audio: np.ndarray, spans: list[tuple[float, float]]) -> tuple[np.ndarray | None, float]:
        """(unit embedding, seconds of speech used) of `audio`'s `spans`; None when under MIN_SPEECH_SECONDS."""
        from resemblyzer.hparams import partials_n_frames

        from whisperx_assets.speech.diarization.offline import mel_spectrogram

        pieces = [audio[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)] for a, b in spans]
        speech = np.concatenate([p for p in pieces if len(p)]) if any(len(p) for p in pieces) else np.zeros(0)
        seconds = len(speech) / SAMPLE_RATE
        level = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64)))) if len(speech) else 0.0
        if seconds < MIN_SPEECH_SECONDS or level < 1e-6:
            return None, seconds
        mel = mel_spectrogram((speech * (10 ** (self.loudness_dbfs / 20) / level)).astype(np.float32))
        if len(mel) < partials_n_frames:  # tiled, not zero-padded: trailing silence would dominate the LSTM
            mel = np.tile(mel, (int(np.ceil(partials_n_frames / len(mel))), 1))[:partials_n_frames]
        half = partials_n_frames // 2
        starts = list(range(0, len(mel) - partials_n_frames + 1, half))
        if starts[-1] + partials_n_frames < len(mel):
            starts.append(len(mel) - partials_n_frames)
        partials = np.stack([mel[s:s + partials_n_frames] for s in starts])
        with self._torch.inference_mode():
            vectors = self._encoder(self._torch.from_numpy(partials).to(self.device)).cpu().numpy()
        mean = vectors.mean(axis=0)
        return mean / np.linalg.norm(mean), seconds

    def speakers(self, audio: np.ndarray, turns: pd.DataFrame) -> pd.DataFrame:
        """One row per diarized speaker: speaker, seconds of solo speech used, embedding (None: too little)."""
        rows = []
        for speaker, spans in solo_spans(turns).items():
            vector, seconds = self.embed(audio, spans)
            rows.append({"speaker": speaker, "seconds": seconds, "model": EMBEDDING_MODEL,
                         "embedding": None if vector is None else vector.astype(np.float32).tolist()})
        frame = pd.DataFrame(rows, columns=[*EMBEDDING_DTYPES, "embedding"])
        return frame.astype(EMBEDDING_DTYPES).sort_values("speaker", kind="stable").reset_index(drop=True)

    def voiceprint(self, clips: list[np.ndarray]) -> tuple[np.ndarray | None, float]:
        """A person's voiceprint from enrollment clips: the embedding of their voiced parts together."""
        from whisperx_assets.speech.align import VOICE_FRAME, voiced_frames

        spans, offset, joined = [], 0, []
        for clip in clips:
            voiced = voiced_frames(clip)
            spans += [((offset + i * VOICE_FRAME) / SAMPLE_RATE, (offset + (i + 1) * VOICE_FRAME) / SAMPLE_RATE)
                      for i in np.flatnonzero(voiced)]
            joined.append(clip)
            offset += len(clip)
        return self.embed(np.concatenate(joined) if joined else np.zeros(0, np.float32), merge_spans(spans))


def merge_spans(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + 1e-9:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def matrix(vectors) -> np.ndarray:
    """Embeddings (lists or arrays, None for none) as rows of a float matrix, zero rows for none."""
    rows = [np.zeros(0) if v is None else np.asarray(v, dtype=np.float64) for v in vectors]
    width = max((len(r) for r in rows), default=0)
    return np.array([r if len(r) else np.zeros(width) for r in rows]).reshape(len(rows), width)


def identify(embeddings: pd.DataFrame, voiceprints: pd.DataFrame,
             threshold: float = NAME_THRESHOLD) -> dict[str, tuple[str, float]]:
    """{speaker: (person, similarity)} for a file's speakers (speaker, embedding) whose best voiceprint (name,
    embedding) clears `threshold`; each person names at most one speaker of a file, the most similar first."""
    prints = voiceprints[voiceprints["embedding"].notna()] if len(voiceprints) else voiceprints
    if not len(embeddings) or not len(prints):
        return {}
    similarity = matrix(embeddings["embedding"]) @ matrix(prints["embedding"]).T
    speakers, names = list(embeddings["speaker"]), list(prints["name"])
    named: dict[str, tuple[str, float]] = {}
    for flat in np.argsort(-similarity, axis=None):
        i, j = np.unravel_index(flat, similarity.shape)
        score = float(similarity[i, j])
        if score < threshold:
            break
        if speakers[i] not in named and names[j] not in {n for n, _ in named.values()}:
            named[speakers[i]] = (names[j], score)
    return named


@dataclasses.dataclass
class Voices:
    """The collection's voices: each member (partition, speaker) with its voice id, and each voice's centroid."""

    members: pd.DataFrame  # partition, speaker, voice_id, similarity (to its voice's centroid when it joined)
    centroids: pd.DataFrame  # voice_id, members, embedding (unit mean of its members)


MEMBER_DTYPES = {"partition": "string", "speaker": "string", "voice_id": "string", "similarity": "float64"}


def no_voices() -> Voices:
    return Voices(pd.DataFrame(columns=list(MEMBER_DTYPES)).astype(MEMBER_DTYPES),
                  pd.DataFrame(columns=["voice_id", "members", "embedding"]).astype({"voice_id": "string",
                                                                                     "members": "int64"}))


def assign_voices(known: Voices, new: pd.DataFrame, threshold: float = VOICE_THRESHOLD) -> Voices:
    """`known` with the speakers of `new` (partition, speaker, embedding; not yet members) added: each joins the
    most similar voice when it clears `threshold` (no two speakers of one file in one voice), else new voices
    are made by clustering the rest among themselves (average linkage at the same threshold), numbered on from
    the highest id. Existing members never change voice, so ids are stable as the collection grows."""
    new = new[new["embedding"].notna()].reset_index(drop=True)
    ids = list(known.centroids["voice_id"])
    sums = {v: np.asarray(e, dtype=np.float64) * n for v, n, e in
            zip(known.centroids["voice_id"], known.centroids["members"], known.centroids["embedding"])}
    counts = dict(zip(known.centroids["voice_id"], known.centroids["members"]))
    taken = {(p, v) for p, v in zip(known.members["partition"], known.members["voice_id"])}
    vectors = matrix(new["embedding"]) if len(new) else np.zeros((0, 0))
    joined: list[dict] = []
    placed: set[int] = set()
    if ids and len(new):  # best matches first, as `identify` names speakers
        centroids = np.stack([sums[v] / np.linalg.norm(sums[v]) for v in ids])
        similarity = vectors @ centroids.T
        for flat in np.argsort(-similarity, axis=None):
            i, j = (int(n) for n in np.unravel_index(flat, similarity.shape))
            score, voice, partition = float(similarity[i, j]), ids[j], new["partition"][i]
            if score < threshold:
                break
            if i in placed or (partition, voice) in taken:
                continue
            joined.append({"partition": partition, "speaker": new["speaker"][i], "voice_id": voice,
                           "similarity": score})
            placed.add(i)
            taken.add((partition, voice))
            sums[voice] = sums[voice] + vectors[i]
            counts[voice] += 1
    rest = [i for i in range(len(new)) if i not in placed]
    next_number = max((int(v.split("_")[-1]) for v in ids), default=0) + 1
    for cluster in cluster_average(vectors[rest], threshold, [new["partition"][i] for i in rest]) if rest else []:
        voice = VOICE_ID.format(next_number)
        next_number += 1
        ids.append(voice)
        members = [rest[k] for k in cluster]
        sums[voice], counts[voice] = vectors[members].sum(axis=0), len(members)
        centroid = sums[voice] / np.linalg.norm(sums[voice])
        joined += [{"partition": new["partition"][i], "speaker": new["speaker"][i], "voice_id": voice,
                    "similarity": float(vectors[i] @ centroid)} for i in members]
    members = pd.concat([known.members, pd.DataFrame(joined, columns=list(MEMBER_DTYPES)).astype(MEMBER_DTYPES)],
                        ignore_index=True)
    centroids = pd.DataFrame([{"voice_id": v, "members": int(counts[v]),
                               "embedding": (sums[v] / np.linalg.norm(sums[v])).astype(np.float32).tolist()}
                              for v in ids], columns=["voice_id", "members", "embedding"])
    return Voices(members.sort_values(["partition", "speaker"], kind="stable").reset_index(drop=True),
                  centroids.astype({"voice_id": "string", "members": "int64"}))


def cluster_average(vectors: np.ndarray, threshold: float, groups: list[str]) -> list[list[int]]:
    """Average-linkage clusters of unit `vectors` whose mean pairwise similarity stays at least `threshold`;
    two vectors of the same group (file) never share a cluster. Clusters in order of their first member."""
    clusters = [[i] for i in range(len(vectors))]
    similarity = vectors @ vectors.T if len(vectors) else np.zeros((0, 0))
    while len(clusters) > 1:
        best, pair = threshold, None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                if {groups[i] for i in clusters[a]} & {groups[i] for i in clusters[b]}:
                    continue
                mean = float(similarity[np.ix_(clusters[a], clusters[b])].mean())
                if mean >= best:
                    best, pair = mean, (a, b)
        if pair is None:
            break
        a, b = pair
        clusters[a] = sorted(clusters[a] + clusters.pop(b))
    return sorted(clusters, key=min)


def voices_from_members(members: pd.DataFrame) -> Voices:
    """The collection's voices from its members with their embeddings (partition, speaker, voice_id, similarity,
    embedding): each voice's centroid is its members' normalised mean."""
    if not len(members):
        return no_voices()
    rows = []
    for voice, group in members.groupby("voice_id", sort=True):
        total = matrix(group["embedding"]).sum(axis=0)
        rows.append({"voice_id": voice, "members": len(group),
                     "embedding": (total / np.linalg.norm(total)).astype(np.float32).tolist()})
    centroids = pd.DataFrame(rows, columns=["voice_id", "members", "embedding"]).astype({"voice_id": "string",
                                                                                        "members": "int64"})
    return Voices(members[list(MEMBER_DTYPES)].astype(MEMBER_DTYPES).reset_index(drop=True), centroids)


def shown_voices(members: pd.DataFrame, named: set[str] = frozenset()) -> dict[tuple[str, str], str]:
    """{(partition, speaker): voice id} for the voices worth showing: heard in more than one file, or named. A
    voice of one file is that file's speaker label already."""
    files = members.groupby("voice_id")["partition"].nunique() if len(members) else pd.Series(dtype="int64")
    shown = set(files[files > 1].index) | set(named)
    return {(p, s): v for p, s, v in zip(members["partition"], members["speaker"], members["voice_id"]) if v in shown}


def relabeled_partitions(before: pd.DataFrame, after: pd.DataFrame, named: set[str] = frozenset()) -> list[str]:
    """The partitions whose speakers show other voice ids with the members `after` than `before`."""
    old, new = shown_voices(before, named), shown_voices(after, named)
    return sorted({partition for (partition, _), _ in set(old.items()) ^ set(new.items())})


def speaker_names(embeddings: pd.DataFrame, partition: str, voiceprints: pd.DataFrame, members: pd.DataFrame,
                  voice_names: dict[str, str], threshold: float = NAME_THRESHOLD) -> pd.DataFrame:
    """A file's speakers with what to call them: the enrolled person their voice matches (`voiceprint`), else
    the person its cross-file voice was named for (`voice`), else its voice id when that voice is heard in other
    files too, else the diarized label. `members`: the collection's voice members (`Voices.members`)."""
    by_voiceprint = identify(embeddings, voiceprints, threshold)
    voice_of = {s: v for (p, s), v in shown_voices(members, set(voice_names)).items() if p == partition}
    rows = []
    for speaker in embeddings["speaker"]:
        voice = voice_of.get(speaker)
        if speaker in by_voiceprint:
            name, similarity = by_voiceprint[speaker]
            row = {"name": name, "similarity": similarity, "named_by": "voiceprint"}
        elif voice in voice_names:
            row = {"name": voice_names[voice], "similarity": None, "named_by": "voice"}
        else:
            row = {"name": None, "similarity": None, "named_by": None}
        rows.append({"speaker": speaker, "label": row["name"] or voice or speaker, "voice_id": voice, **row})
    return pd.DataFrame(rows, columns=list(NAME_DTYPES)).astype(NAME_DTYPES)
