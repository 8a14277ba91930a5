"""The SPEAKERS_DIR layout on a temporary folder: enrolling (every clip checked first), names and voice ids, naming
voices, listing, and the fingerprint `speakers_sensor` compares (of what is enrolled only)."""

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from upath import UPath

from whisperx_assets.inputs.enrollment import (checked_name, checked_voice, enroll, enrolled, fingerprint,
                                               name_voice)


@pytest.fixture
def root(tmp_path) -> UPath:
    return UPath(tmp_path / "speakers")


def clip(path, seconds: float = 0.1, level: float = 0.0, when: float | None = None):
    """A tiny real WAV (its samples at `level`), its modification time set to `when` if given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(int(seconds * 16_000), level, dtype=np.float32), 16_000)
    if when is not None:
        os.utime(path, (when, when))
    return path


def tree(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def fingerprint_of(root, *people) -> str:
    """The fingerprint of `people`'s folders alone (copied elsewhere with their times)."""
    alone = UPath(str(root) + "-alone")
    for person in people:
        shutil.copytree(root / person, alone / person)
    return fingerprint(alone)


def test_enroll_copies_the_clips_into_the_persons_folder(root, tmp_path):
    sources = [clip(tmp_path / "in" / "hello.wav", level=0.1), clip(tmp_path / "in" / "Call.MP3")]
    copied = enroll(root, "Ada Lovelace", sources)
    assert copied == [root / "Ada Lovelace" / "hello.wav", root / "Ada Lovelace" / "Call.MP3"]
    assert [p.read_bytes() for p in copied] == [p.read_bytes() for p in sources]
    assert all(p.exists() for p in sources)
    assert [c.name for c in enrolled(root)["Ada Lovelace"].clips] == ["Call.MP3", "hello.wav"]


def test_enroll_takes_a_relative_clip_path(root, tmp_path, monkeypatch):
    clip(tmp_path / "in" / "a.wav")
    monkeypatch.chdir(tmp_path / "in")
    assert enroll(root, "Ada", [Path("a.wav")]) == [root / "Ada" / "a.wav"]
    assert (root / "Ada" / "a.wav").read_bytes() == (tmp_path / "in" / "a.wav").read_bytes()


def test_enrolling_again_adds_new_clips_and_replaces_one_of_the_same_name(root, tmp_path):
    enroll(root, "Ada", [clip(tmp_path / "first" / "a.wav", level=0.1), clip(tmp_path / "first" / "b.wav")])
    newer = clip(tmp_path / "second" / "a.wav", seconds=0.2, level=0.2)
    enroll(root, "Ada", [newer, clip(tmp_path / "second" / "c.wav")])
    assert [c.name for c in enrolled(root)["Ada"].clips] == ["a.wav", "b.wav", "c.wav"]
    assert (root / "Ada" / "a.wav").read_bytes() == newer.read_bytes()


def test_enroll_strips_the_name(root, tmp_path):
    enroll(root, "  Ada \n", [clip(tmp_path / "a.wav")])
    assert tree(root) == ["Ada/a.wav"]


@pytest.mark.parametrize("name", ["", "   ", ".", "..", "../x", "../../etc", "/abs", "/", ".hidden", "a/b",
                                  "a\\b", "tab\there", "new\nline", "nul\x00", "del\x7f", "x" * 101])
def test_unusable_names_are_refused_and_nothing_is_written(root, tmp_path, name):
    source = clip(tmp_path / "in" / "a.wav")
    with pytest.raises(ValueError, match="is not a usable person name: 1-100 characters"):
        enroll(root, name, [source])
    with pytest.raises(ValueError, match="is not a usable person name"):
        name_voice(root, "VOICE_0001", name)
    assert not root.exists()
    assert tree(tmp_path) == ["in/a.wav"]


@pytest.mark.parametrize("name", ["Ada", "x" * 100, "Zoë Ó'Brien-Smith", "a..b", "J. R. R.", "2nd speaker"])
def test_usable_names_are_kept(name):
    assert checked_name(name) == name


@pytest.mark.parametrize("voice", ["VOICE_0007", "VOICE_0000", "VOICE_12345"])
def test_voice_ids_like_voice_0007_are_accepted(voice):
    assert checked_voice(voice) == voice


@pytest.mark.parametrize("voice", ["", "VOICE_007", "VOICE_7", "voice_0007", "VOICE0007", "VOICE_0007 ",
                                   " VOICE_0007", "VOICE_0007\n", "VOICE_00a7", "SPEAKER_00", "../VOICE_0007",
                                   "VOICE_0007.voice", "VOICE_\u0660\u0660\u0660\u0667", "VOICE_\uff10\uff10\uff10\uff17",
                                   "VOICE_000\u0667"])
def test_other_voice_ids_are_refused(root, voice):
    with pytest.raises(ValueError, match="is not a voice id"):
        checked_voice(voice)
    with pytest.raises(ValueError, match="is not a voice id"):
        name_voice(root, voice, "Ada")
    assert not root.exists()


def test_a_clip_of_an_unsupported_type_is_refused(root, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio")
    with pytest.raises(ValueError, match=r"notes.txt: unsupported extension '\.txt'"):
        enroll(root, "Ada", [notes])
    bare = tmp_path / "recording"
    bare.write_bytes(b"RIFF")
    with pytest.raises(ValueError, match=r"unsupported extension '\(none\)'"):
        enroll(root, "Ada", [bare])
    assert not root.exists()


@pytest.mark.parametrize("bad, reason", [
    ("missing.wav", "no such file"), ("folder.wav", "not a file"), ("notes.txt", r"unsupported extension '\.txt'"),
    (".hidden.wav", "a hidden file name"), ("other/a.wav", "the same file name as .*/in/a.wav")])
def test_every_clip_is_checked_before_anything_is_written(root, tmp_path, bad, reason):
    good = [clip(tmp_path / "in" / "a.wav"), clip(tmp_path / "in" / "b.wav")]
    (tmp_path / "folder.wav").mkdir()
    (tmp_path / "notes.txt").write_text("not audio")
    clip(tmp_path / ".hidden.wav")
    clip(tmp_path / "other" / "a.wav")
    with pytest.raises(ValueError, match=f"^{re.escape(str(tmp_path / bad))}: {reason}"):
        enroll(root, "Ada", [*good, tmp_path / bad])
    assert not root.exists()


def test_the_same_clip_twice_is_refused(root, tmp_path):
    source = clip(tmp_path / "in" / "a.wav")
    with pytest.raises(ValueError, match="a.wav: the same file name as"):
        enroll(root, "Ada", [source, source])
    assert not root.exists()


def test_naming_a_voice_writes_an_empty_marker_in_the_persons_folder(root, tmp_path):
    enroll(root, "Ada", [clip(tmp_path / "a.wav")])
    marker = name_voice(root, "VOICE_0007", "Ada")
    assert marker == root / "Ada" / "VOICE_0007.voice" and marker.read_bytes() == b""
    name_voice(root, "VOICE_0012", " Ada ")
    assert enrolled(root)["Ada"].voices == ["VOICE_0007", "VOICE_0012"]
    assert [c.name for c in enrolled(root)["Ada"].clips] == ["a.wav"]


def test_naming_a_voice_after_someone_without_clips_enrolls_them_with_that_voice(root):
    name_voice(root, "VOICE_0003", "Grace")
    assert tree(root) == ["Grace/VOICE_0003.voice"]
    person = enrolled(root)["Grace"]
    assert person.clips == [] and person.voices == ["VOICE_0003"]


def test_naming_a_voice_moves_it_from_whoever_had_it(root):
    name_voice(root, "VOICE_0007", "Ada")
    name_voice(root, "VOICE_0008", "Ada")
    name_voice(root, "VOICE_0007", "Grace")
    assert tree(root) == ["Ada/VOICE_0008.voice", "Grace/VOICE_0007.voice"]
    name_voice(root, "VOICE_0007", "Grace")
    assert tree(root) == ["Ada/VOICE_0008.voice", "Grace/VOICE_0007.voice"]


def test_enrolled_lists_people_with_their_clips_and_voices_by_name(root, tmp_path):
    (root / "Grace").mkdir(parents=True)
    for name in ("b.wav", "a.flac", "Loud.WAV", "talk.mp4"):
        (root / "Grace" / name).write_bytes(b"listed, not decoded")
    (root / "Ada").mkdir()
    (root / "Ada" / "VOICE_0002.voice").touch()
    (root / "Ada" / "VOICE_0001.voice").touch()
    people = enrolled(root)
    assert list(people) == ["Ada", "Grace"]
    assert people["Ada"].clips == [] and people["Ada"].voices == ["VOICE_0001", "VOICE_0002"]
    assert people["Grace"].clips == [root / "Grace" / n for n in ("Loud.WAV", "a.flac", "b.wav", "talk.mp4")]
    assert people["Grace"].voices == []


def test_enrolled_ignores_what_is_not_a_person_clip_or_voice(root):
    clip(root / "Ada" / "a.wav")
    for junk in (".DS_Store", ".a.wav.partial", "notes.txt", "README", "VOICE_7.voice", "Ada.voice",
                 "voice_0001.voice", "VOICE_0001.VOICE"):
        (root / "Ada" / junk).write_bytes(b"")
    clip(root / "Ada" / "nested" / "deeper.wav")
    clip(root / ".trash" / "old.wav")
    clip(root / "loose.wav")
    (root / "Empty").mkdir()
    people = enrolled(root)
    assert list(people) == ["Ada", "Empty"]
    assert people["Ada"].clips == [root / "Ada" / "a.wav"] and people["Ada"].voices == []
    assert people["Empty"].clips == [] and people["Empty"].voices == []


def test_folders_whose_names_the_cli_would_change_are_not_people(root):
    for name in ("Ada ", " Ada", "Ada\u00a0", "Grace"):
        clip(root / name / "a.wav")
        (root / name / "VOICE_0001.voice").touch()
    assert list(enrolled(root)) == ["Grace"]
    assert fingerprint(root) == fingerprint_of(root, "Grace")


def test_voice_markers_need_ascii_digits(root):
    clip(root / "Ada" / "a.wav")
    for marker in ("VOICE_\u0660\u0660\u0660\u0661.voice", "VOICE_\uff10\uff10\uff10\uff11.voice", "VOICE_0002.voice"):
        (root / "Ada" / marker).touch()
    assert enrolled(root)["Ada"].voices == ["VOICE_0002"]


def test_nobody_is_enrolled_without_a_speakers_folder(root, tmp_path):
    assert enrolled(root) == {}
    (tmp_path / "a-file").write_bytes(b"")
    assert enrolled(UPath(tmp_path / "a-file")) == {}


def test_fingerprint_stays_the_same_while_nothing_changes(root, tmp_path):
    assert fingerprint(root) == fingerprint(UPath(tmp_path / "elsewhere"))  # no folder: nobody enrolled
    clip(root / "Ada" / "a.wav", when=1_000_000)
    name_voice(root, "VOICE_0001", "Ada")
    first = fingerprint(root)
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    (root / "Ada" / "a.wav").read_bytes()
    enrolled(root)
    assert fingerprint(root) == first
    clip(root / "loose.wav")
    (root / "Nobody Yet").mkdir()
    assert fingerprint(root) == first


def test_fingerprint_changes_with_each_clip_or_voice_change(root, tmp_path):
    clip(root / "Ada" / "a.wav", level=0.1, when=1_000_000)
    seen = [fingerprint(root)]

    def changed():
        seen.append(fingerprint(root))
        return seen[-1] != seen[-2]

    enroll(root, "Ada", [clip(tmp_path / "in" / "b.wav")])
    assert changed()
    clip(root / "Ada" / "a.wav", level=0.2, when=1_000_000)  # same size and time: not seen
    assert not changed()
    clip(root / "Ada" / "a.wav", level=0.2, when=1_000_001)
    assert changed()
    clip(root / "Ada" / "a.wav", seconds=0.2, level=0.2, when=1_000_001)
    assert changed()
    (root / "Ada" / "b.wav").unlink()
    assert changed()
    name_voice(root, "VOICE_0001", "Ada")
    assert changed()
    name_voice(root, "VOICE_0001", "Grace")
    assert changed()
    (root / "Grace" / "VOICE_0001.voice").unlink()
    assert changed() and seen[-1] == seen[-4]  # back to the clips alone
    (root / "Ada").rename(root / "Ada L")
    assert changed()
    assert len(set(seen)) == 8


def test_fingerprint_counts_only_what_is_enrolled(root):
    clip(root / "Ada" / "a.wav", when=1_000_000)
    name_voice(root, "VOICE_0001", "Ada")
    first = fingerprint(root)
    for junk in (".DS_Store", ".a.wav.x1y2z3", "a.wav.partial", "notes.txt", "VOICE_7.voice", "voice_0001.voice",
                 "VOICE_0002.VOICE", "VOICE_\u0660\u0660\u0660\u0663.voice"):
        (root / "Ada" / junk).write_bytes(b"junk")
    clip(root / "Ada" / "nested" / "deeper.wav")
    clip(root / ".trash" / "old.wav")
    clip(root / "Ada " / "a.wav")
    clip(root / "loose.wav")
    assert fingerprint(root) == first


@pytest.mark.parametrize("call", [1, 2])
def test_fingerprint_leaves_out_a_clip_that_vanishes_meanwhile(root, monkeypatch, call):
    """The clip is deleted just before the `call`th stat of it (listing it, then reading its size)."""
    clip(root / "Ada" / "a.wav", when=1_000_000)
    clip(root / "Ada" / "gone.wav", when=1_000_000)
    real, calls = Path.stat, []

    def stat(path, *args, **kwargs):
        if path.name == "gone.wav":
            calls.append(path)
            if len(calls) == call:
                os.unlink(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    vanished = fingerprint(root)
    monkeypatch.undo()
    assert len(calls) >= call and not (root / "Ada" / "gone.wav").exists()
    assert vanished == fingerprint(root)
