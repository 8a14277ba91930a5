"""The media store and the Parquet IO manager: layout, round trip, atomicity, path safety."""

import hashlib
import os
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from dagster import AssetKey, PartitionKeyRange, StaticPartitionsDefinition, build_input_context, build_output_context

from whisperx_assets.defs.io_managers import ParquetIOManager
from whisperx_assets.inputs.fetch import FetchPolicy
from whisperx_assets.inputs.keys import content_hash
from whisperx_assets.inputs.sources import identify, location
from whisperx_assets.speech.errors import MediaError
from whisperx_assets.speech.frames import SEGMENT_DTYPES, segments_frame
from whisperx_assets.inputs.store import MediaStore, StageOutput, atomic_write, copy_file

KEY = "meeting-0123456789ab"


def frame():
    return segments_frame([{"start": 0.5, "end": 1.25, "text": "hello", "speaker": "A"}], "en")


def test_parquet_round_trip_keeps_dtypes(tmp_path):
    manager = ParquetIOManager(root=str(tmp_path)).create_io_manager(None)
    out = build_output_context(asset_key=AssetKey("transcript"), partition_key=KEY)
    manager.handle_output(out, {KEY: frame()})
    path = tmp_path / "transcript" / f"{KEY}.parquet"
    assert path.is_file()
    loaded = manager.load_input(build_input_context(asset_key=AssetKey("transcript"), partition_key=KEY))
    assert list(loaded) == [KEY]
    assert {c: str(t) for c, t in loaded[KEY].dtypes.items()} == SEGMENT_DTYPES
    pd.testing.assert_frame_equal(loaded[KEY], frame())


def test_several_partitions_in_one_output_get_one_file_each(tmp_path):
    manager = ParquetIOManager(root=str(tmp_path)).create_io_manager(None)
    keys = ["a-0123456789ab", "b-0123456789ab", "c-0123456789ab"]
    batch = {"asset_key": AssetKey("transcript"), "asset_partitions_def": StaticPartitionsDefinition(keys),
             "asset_partition_key_range": PartitionKeyRange(keys[0], keys[2])}
    manager.handle_output(build_output_context(**batch), {k: frame() for k in keys})
    assert sorted(p.name for p in (tmp_path / "transcript").iterdir()) == [f"{k}.parquet" for k in keys]
    assert sorted(manager.load_input(build_input_context(**batch))) == keys


def test_an_output_must_cover_exactly_its_partitions(tmp_path):
    """Dagster records a materialization for every partition of the step: a missing file would be a lie."""
    manager = ParquetIOManager(root=str(tmp_path)).create_io_manager(None)
    out = build_output_context(asset_key=AssetKey("transcript"), partition_key=KEY)
    with pytest.raises(TypeError, match="one DataFrame per partition"):
        manager.handle_output(out, frame())
    with pytest.raises(TypeError, match="one DataFrame per partition"):
        manager.handle_output(out, {KEY: frame(), "other-0123456789ab": frame()})
    assert not (tmp_path / "transcript").exists()


def test_failed_write_leaves_previous_file_intact(tmp_path):
    target = tmp_path / "t.parquet"
    frame().to_parquet(target)
    before = target.read_bytes()

    def broken(file):
        file.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, broken)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["t.parquet"]  # no temporary left behind


def test_paths_never_escape(tmp_path):
    manager = ParquetIOManager(root=str(tmp_path)).create_io_manager(None)
    with pytest.raises(ValueError, match="invalid partition key"):
        manager.store.output_path("transcript", "../../etc-0123456789ab")
    store = MediaStore(tmp_path)
    with pytest.raises(ValueError):
        store.source_record("../x")
    with pytest.raises(MediaError, match="unsupported extension"):
        store.media_path(KEY, "x.exe")
    with pytest.raises(ValueError, match="invalid inbox state name"):  # a name read from a sensor cursor
        store.inbox_state("../../etc/passwd")


def test_inbox_states_are_named_by_their_content_and_pruned(tmp_path):
    store = MediaStore(tmp_path)
    first, second = store.write_inbox_state({"a.wav": [1, 2]}), store.write_inbox_state({"b.wav": [3, 4]})
    assert store.write_inbox_state({"a.wav": [1, 2]}) == first != second
    assert store.read_inbox_state(second) == {"b.wav": [3, 4]}
    store.prune_inbox_states({second}, older_than=60)  # all recent: none goes
    assert {p.stem for p in (tmp_path / "inbox-state").iterdir()} == {first, second}
    store.prune_inbox_states({second}, older_than=0)
    assert {p.stem for p in (tmp_path / "inbox-state").iterdir()} == {second}


def test_ingest_verifies_content(tmp_path):
    source = tmp_path / "in.wav"
    source.write_bytes(b"RIFF-data")
    key = identify(source).key
    store = MediaStore(tmp_path / "store")
    stored = store.ingest(key, source, "in.wav", content_hash(source))
    assert stored.read_bytes() == b"RIFF-data" and stored.parent.name == "inputs"
    other = tmp_path / "other.wav"
    other.write_bytes(b"RIFF-changed")
    with pytest.raises(MediaError, match="changed after it was registered"):
        store.ingest("in-ffffffffffff", other, "in.wav", content_hash(source))
    assert not (tmp_path / "store" / "inputs" / "in-ffffffffffff.wav").exists()


def test_ingest_of_a_file_deleted_after_registration(tmp_path):
    source = tmp_path / "in.wav"
    source.write_bytes(b"RIFF-data")
    key, sha256 = identify(source).key, content_hash(source)
    store = MediaStore(tmp_path / "store")
    source.unlink()
    with pytest.raises(MediaError, match=r"file not found \(moved or deleted before it was ingested\)") as error:
        store.ingest(key, source, "in.wav", sha256)
    assert error.value.path == str(source)
    assert not list((tmp_path / "store" / "inputs").iterdir())  # no partial copy or temporary left


def test_ingest_of_a_file_replaced_after_registration(tmp_path):
    source = tmp_path / "in.wav"
    source.write_bytes(b"RIFF-data")
    key, sha256 = identify(source).key, content_hash(source)
    source.write_bytes(b"RIFF-other-data")
    store = MediaStore(tmp_path / "store")
    with pytest.raises(MediaError, match="file changed after it was registered; ") as error:
        store.ingest(key, source, "in.wav", sha256)
    assert error.value.path == str(source)
    assert not list((tmp_path / "store" / "inputs").iterdir())  # no stale copy for a later run to trust


@pytest.fixture(params=["folder", "bucket"])
def store_root(request, tmp_path) -> str:
    """A store root: a local folder, or a prefix in a bucket of a real S3-compatible server."""
    return str(tmp_path / "store") if request.param == "folder" else f"{request.getfixturevalue('s3')}/store"


def test_download_records_the_sha256_of_the_downloaded_bytes(store_root, monkeypatch):
    payload = b"RIFF" + bytes(range(256)) * 64

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("FETCH_ALLOW_PRIVATE_ADDRESSES", "1")
    try:
        source = identify(f"http://127.0.0.1:{server.server_address[1]}/talk.wav")
        store = MediaStore(store_root)
        store.register(source)
        stored = store.download(source, FetchPolicy())
    finally:
        server.shutdown()
        server.server_close()
    assert stored.read_bytes() == payload and source.sha256 is None
    sha256 = hashlib.sha256(payload).hexdigest()
    assert store.source(source.key) == replace(source, sha256=sha256)
    store.register(source)  # a re-run's config registers the URL again: the file is not downloaded again
    assert store.download(source, FetchPolicy()) == stored and store.source(source.key).sha256 == sha256
    assert str(stored).startswith(store_root)


def test_the_store_in_a_bucket(s3, tmp_path):
    """The same store on a real S3-compatible server: records, inputs (from a local file and from another
    object), outputs with their work, subtitles, inbox states; the IO manager over it."""
    store = MediaStore(f"{s3}/store")
    assert str(store.root) == f"{s3}/store"
    local = tmp_path / "in.wav"
    local.write_bytes(b"RIFF-data")
    source = identify(local)
    store.register(source)
    assert store.source(source.key) == source
    stored = store.ingest(source.key, local, "in.wav", source.sha256)
    assert str(stored) == f"{s3}/store/inputs/{source.key}.wav" and stored.read_bytes() == b"RIFF-data"

    upload = location(f"{s3}/uploads/other.wav")
    copy_file(location(local), upload)
    from_bucket = identify(str(upload))
    assert (from_bucket.source, from_bucket.sha256) == (str(upload), source.sha256)
    with pytest.raises(MediaError, match="changed after it was registered"):
        store.ingest("other-ffffffffffff", upload, "other.wav", "0" * 64)
    assert not store.media_path("other-ffffffffffff", "other.wav").exists()

    manager = ParquetIOManager(root=str(store.root)).create_io_manager(None)
    manager.handle_output(build_output_context(asset_key=AssetKey("transcript"), partition_key=KEY), {KEY: frame()})
    assert store.written_by("transcript", KEY) == ""
    loaded = manager.load_input(build_input_context(asset_key=AssetKey("transcript"), partition_key=KEY))
    pd.testing.assert_frame_equal(loaded[KEY], frame())
    store.write_output("alignment", KEY, StageOutput(frame(), {"backend": "x"}), "run-1")
    assert store.written_by("alignment", KEY) == "run-1"
    assert store.read_output("alignment", KEY).facts == {"backend": "x"}

    (tmp_path / "a.srt").write_text("1\n")
    published = store.publish(tmp_path / "a.srt", store.subtitles_dir(KEY) / "a.srt")
    assert published.read_text() == "1\n"

    first = store.write_inbox_state({"a.wav": [1, 2, "etag"]})
    assert store.read_inbox_state(first) == {"a.wav": [1, 2, "etag"]}
    store.prune_inbox_states(set(), older_than=0)
    assert not store.inbox_state(first).exists()


def test_a_failed_upload_leaves_no_object(s3):
    target = location(f"{s3}/store/transcript/{KEY}.parquet")
    target.parent.mkdir(parents=True, exist_ok=True)

    def broken(file):
        file.write(b"x" * (6 << 20))  # past s3fs's first part: a multipart upload is under way
        raise OSError("connection lost")

    with pytest.raises(OSError, match="connection lost"):
        atomic_write(target, broken)
    assert not target.exists()
