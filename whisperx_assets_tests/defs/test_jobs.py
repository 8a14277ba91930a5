"""How runs are cut: batches bounded by file count and by audio seconds."""

from whisperx_assets.defs.jobs import batches

KEYS = list("abcdef")


def test_batches_by_file_count():
    assert batches(KEYS, 4) == [["a", "b", "c", "d"], ["e", "f"]]
    assert batches(KEYS, 1) == [[k] for k in KEYS]
    assert batches([], 4) == []


def test_batches_by_audio_seconds():
    seconds = {"a": 600, "b": 600, "c": 2400, "d": 3000, "e": 100, "f": 100}
    assert batches(KEYS, 32, seconds, 3600) == [["a", "b", "c"], ["d", "e", "f"]]
    assert batches(KEYS, 2, seconds, 3600) == [["a", "b"], ["c"], ["d", "e"], ["f"]]  # both bounds hold


def test_a_long_file_runs_alone_and_an_unknown_one_counts_as_nothing():
    seconds = {"a": 10, "b": 7200, "c": 10, "d": None, "e": 3590}  # f: not probed
    assert batches(KEYS, 32, seconds, 3600) == [["a"], ["b"], ["c", "d", "e", "f"]]


def test_no_audio_bound():
    assert batches(KEYS, 32, {"a": 7200}, 0) == [KEYS]
