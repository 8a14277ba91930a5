"""The enrolled people under SPEAKERS_DIR: a folder per person named by the person's name, holding voice clips
(any supported media file) and, for each cross-file voice named after the person, an empty `VOICE_0007.voice`
file. The CLI writes it (`speakers enroll`, `speakers name`), users may too; `speakers_sensor` watches it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from upath import UPath

from whisperx_assets.speech.media import SUPPORTED_EXTENSIONS

VOICE_SUFFIX = ".voice"
VOICE_ID = re.compile(r"VOICE_[0-9]{4,}")  # ASCII digits: \d takes any script's
# A person's name is a folder name: no separators, no control characters, not hidden, not "." or "..".
PERSON_NAME = re.compile(r"[^\x00-\x1f\x7f/\\.][^\x00-\x1f\x7f/\\]{0,99}")


def checked_name(name: str) -> str:
    name = name.strip()
    if not usable_name(name):
        raise ValueError(f"{name!r} is not a usable person name: 1-100 characters, no slashes or control "
                         "characters, not starting with a dot")
    return name


def checked_voice(voice: str) -> str:
    if not VOICE_ID.fullmatch(voice):
        raise ValueError(f"{voice!r} is not a voice id (VOICE_0007, as `whisperx-assets speakers list` shows them)")
    return voice


@dataclass
class Person:
    clips: list[UPath] = field(default_factory=list)
    voices: list[str] = field(default_factory=list)


def usable_name(name: str) -> bool:
    """Whether a folder named `name` is a person's: a name `checked_name` keeps as it is."""
    return name == name.strip() and PERSON_NAME.fullmatch(name) is not None


def listing(folder: UPath) -> list[UPath]:
    """`folder`'s entries by name; none if it vanished meanwhile."""
    try:
        return sorted(folder.iterdir(), key=lambda p: p.name)
    except FileNotFoundError:
        return []


def enrolled(root: UPath) -> dict[str, Person]:
    """{name: their clips and named voices}, by name; folders with unusable names, hidden files, subfolders and
    files of other types are skipped."""
    people: dict[str, Person] = {}
    if not root.is_dir():
        return people
    for folder in listing(root):
        if not usable_name(folder.name) or not folder.is_dir():
            continue
        person = people[folder.name] = Person()
        for path in listing(folder):
            if path.name.startswith(".") or not path.is_file():
                continue
            if path.suffix == VOICE_SUFFIX and VOICE_ID.fullmatch(path.stem):
                person.voices.append(path.stem)
            elif path.suffix.lower() in SUPPORTED_EXTENSIONS:
                person.clips.append(path)
    return people


def fingerprint(root: UPath) -> str:
    """A short hash of what `enrolled` finds, each clip with its size and modification time: changes when a clip
    or a voice name is added, replaced or removed, not with other files. A file that vanishes meanwhile is left
    out."""
    entries = []
    for name, person in enrolled(root).items():
        for path in person.clips:
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append(f"{name}/{path.name}\t{stat.st_size}\t{getattr(stat, 'st_mtime', 0)}")
        entries += [f"{name}/{voice}{VOICE_SUFFIX}" for voice in person.voices]
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]


def checked_clips(clips: list[Path]) -> None:
    """Refuse the clips unless each is an existing file of a supported type with a name of its own."""
    names: dict[str, Path] = {}
    for clip in clips:
        if not clip.exists():
            reason = "no such file"
        elif not clip.is_file():
            reason = "not a file"
        elif clip.suffix.lower() not in SUPPORTED_EXTENSIONS:
            reason = f"unsupported extension {clip.suffix or '(none)'!r}"
        elif clip.name.startswith("."):
            reason = "a hidden file name (it would not be enrolled)"
        elif clip.name in names:
            reason = f"the same file name as {names[clip.name]} (one would replace the other)"
        else:
            names[clip.name] = clip
            continue
        raise ValueError(f"{clip}: {reason}")


def enroll(root: UPath, name: str, clips: list[Path]) -> list[UPath]:
    """Copy `clips` into `name`'s folder (all checked before any is copied); where they are now."""
    from whisperx_assets.inputs.store import copy_file

    folder = root / checked_name(name)
    checked_clips(clips)
    copied = []
    for clip in clips:
        target = folder / clip.name
        copy_file(UPath(clip.resolve()), target)
        copied.append(target)
    return copied


def name_voice(root: UPath, voice: str, name: str) -> UPath:
    """Name the cross-file voice `voice` after `name` (moving the name from anyone it named before)."""
    from whisperx_assets.inputs.store import atomic_write

    voice, name = checked_voice(voice), checked_name(name)
    for person, enrolled_person in enrolled(root).items():
        if voice in enrolled_person.voices and person != name:
            (root / person / f"{voice}{VOICE_SUFFIX}").unlink()
    marker = root / name / f"{voice}{VOICE_SUFFIX}"
    atomic_write(marker, lambda f: None)
    return marker
