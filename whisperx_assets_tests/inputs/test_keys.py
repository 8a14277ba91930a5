import pytest

from whisperx_assets.inputs.keys import is_valid_key, partition_key, readable_name
from whisperx_assets.inputs.sources import identify


@pytest.mark.parametrize("name, readable", [
    ("Team Meeting (final).MP3", "team-meeting-final"),
    ("../../etc/passwd.wav", "passwd"),
    ("..wav", "media"),
    ("a,b c\td\x00e.wav", "a-b-c-d-e"),
    ("ünïcödé.ogg", "n-c-d"),
    ("x" * 200 + ".wav", "x" * 40),
    ("no_extension", "no_extension"),
    (".hidden.wav", "hidden"),
])
def test_readable_name(name, readable):
    assert readable_name(name) == readable


def test_key_is_safe_stable_and_content_addressed(tmp_path):
    a = tmp_path / "call 1.wav"
    a.write_bytes(b"RIFF-one")
    b = tmp_path / "sub"
    b.mkdir()
    (b / "call 1.wav").write_bytes(b"RIFF-one")
    key = identify(a).key
    assert key == identify(b / "call 1.wav").key  # same bytes, same name -> same key
    assert key.startswith("call-1-") and is_valid_key(key)
    for bad in ("..", ",", " ", "/", "\n", "."):
        assert bad not in key
    a.write_bytes(b"RIFF-two")
    assert identify(a).key != key  # changed file -> new key, processed again
    assert partition_key("other.wav", "0" * 64) != partition_key("call 1.wav", "0" * 64)


@pytest.mark.parametrize("key", ["../x-0123456789ab", "a/b-0123456789ab", "a-0123456789ab/../..", "", "a b-0123456789ab"])
def test_invalid_keys_are_rejected(key):
    assert not is_valid_key(key)
