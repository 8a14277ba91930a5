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
VOICE_ID = re.compile(r"VOICE_\d{4,}")
# A person's name is a folder name: no separators, no control characters, not hidden, not "." or "..".
PERSON_NAME = re.compile(r"[^\x00-\x1f\x7f/\\.][^\x00-\x1f\x7f/\\]{0,99}")


def checked_name(name: str) -> str:
    name = name.strip()
    if not PERSON_NAME.fullmatch(name):
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


def enrolled(root: UPath) -> dict[str, Person]:
    """{name: their clips and named voices}, by name; folders with unusable names are skipped."""
    people: dict[str, Person] = {}
    if not root.is_dir():
        return people
    for folder in sorted(root.iterdir(), key=lambda p: p.name):
        if not folder.is_dir() or not PERSON_NAME.fullmatch(folder.name):
            continue
        person = people[folder.name] = Person()
        for path in sorted(folder.iterdir(), key=lambda p: p.name):
            if path.name.startswith(".") or not path.is_file():
                continue
            if path.suffix == VOICE_SUFFIX and VOICE_ID.fullmatch(path.stem):
                person.voices.append(path.stem)
            elif path.suffix.lower() in SUPPORTED_EXTENSIONS:
                person.clips.append(path)
    return people


def fingerprint(root: UPath) -> str:
    """A short hash of every file under `root` with its size and modification time: changes when a clip or a
    voice name is added, replaced or removed."""
    entries = []
    if root.is_dir():
        for folder in sorted(root.iterdir(), key=lambda p: p.name):
            for path in sorted(folder.iterdir(), key=lambda p: p.name) if folder.is_dir() else []:
                stat = path.stat()
                entries.append(f"{folder.name}/{path.name}\t{stat.st_size}\t{getattr(stat, 'st_mtime', 0)}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]


def enroll(root: UPath, name: str, clips: list[Path]) -> list[UPath]:
    """Copy `clips` into `name`'s folder; where they are now."""
    from whisperx_assets.inputs.store import copy_file

    folder = root / checked_name(name)
    copied = []
    for clip in clips:
        if clip.suffix.lower() not in SUPPORTED_EXTENSIONS:
            raise ValueError(f"{clip}: unsupported extension {clip.suffix or '(none)'!r}")
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
