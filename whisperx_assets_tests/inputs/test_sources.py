"""Which sources a deployment may read: `within` its SOURCE_ROOTS."""

import os

from whisperx_assets.inputs.sources import within


def test_a_local_source_is_within_a_root_only_below_it(tmp_path):
    inbox, other = tmp_path / "inbox", tmp_path / "inbox2"
    (inbox / "sub").mkdir(parents=True)
    other.mkdir()
    assert within(str(inbox / "sub" / "a.wav"), [str(inbox)])
    assert not within(str(other / "a.wav"), [str(inbox)])  # a sibling sharing the root's name as a prefix
    assert not within(str(inbox / ".." / "inbox2" / "a.wav"), [str(inbox)])
    assert not within("/etc/passwd", [str(inbox)])
    assert within(str(other / "a.wav"), [str(inbox), str(other)])
    assert not within(str(inbox / "a.wav"), [])


def test_a_symbolic_link_is_judged_by_where_it_points(tmp_path):
    inbox, secret = tmp_path / "inbox", tmp_path / "secret"
    inbox.mkdir()
    secret.mkdir()
    (secret / "a.wav").write_bytes(b"x")
    os.symlink(secret / "a.wav", inbox / "link.wav")
    os.symlink(secret, inbox / "folder")
    assert not within(str(inbox / "link.wav"), [str(inbox)])
    assert not within(str(inbox / "folder" / "a.wav"), [str(inbox)])
    assert within(str(inbox / "link.wav"), [str(secret)])


def test_object_sources_are_within_their_prefix():
    assert within("s3://media/inbox/a.wav", ["s3://media/inbox"])
    assert within("s3://media/inbox/a/b.wav", ["s3://media/inbox/"])
    assert not within("s3://media/inbox2/a.wav", ["s3://media/inbox"])
    assert not within("s3://media/inbox/../private/a.wav", ["s3://media/inbox"])
    assert not within("s3://other/inbox/a.wav", ["s3://media/inbox"])
    assert not within("s3://media/inbox/a.wav", ["/media/inbox"])
    assert not within("/media/inbox/a.wav", ["s3://media/inbox"])
    assert not within("ftp://media/inbox/a.wav", ["s3://media/inbox"])
