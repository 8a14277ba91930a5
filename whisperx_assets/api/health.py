"""Health checks of a deployment, for `whisperx-assets health` and container probes.

Liveness (cheap): the webserver answers GraphQL, and the daemons it reports beat in time. Readiness adds: the
code location is loaded without error, the store takes a write and a delete, and the configured models are on
this machine (resolved as a run would, but never downloaded nor loaded).

Each check is a plain function returning a `Check`; the GraphQL ones take a `query(document) -> data` callable,
so they can be tried without a server.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Callable

LOCATION = "whisperx_assets"  # workspace.yaml's location_name (also `client.LOCATION`; not imported: cheap)
HEARTBEAT_MAX_AGE = 120.0  # seconds; a daemon beats every 30 s
TIMEOUT = 10.0  # seconds per GraphQL request
PROBE_PREFIX = "health"  # where the store check writes its probe object

Query = Callable[[str], dict]


@dataclass(frozen=True)
class Check:
    check: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'FAIL':<5}{self.check}: {self.detail}"

    def as_dict(self) -> dict:
        return asdict(self)


class Unreachable(ConnectionError):
    """The webserver did not answer at all."""


def graphql(url: str, timeout: float = TIMEOUT) -> Query:
    """`query(document) -> data` against `url`'s /graphql. No answer raises `Unreachable`; an error answer
    raises RuntimeError."""
    import requests

    endpoint = (url if "://" in url else f"http://{url}").rstrip("/") + "/graphql"

    def query(document: str) -> dict:
        try:
            response = requests.post(endpoint, json={"query": document}, timeout=timeout)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise Unreachable(f"no answer from {endpoint} ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise RuntimeError(f"{endpoint} answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise RuntimeError(f"{endpoint} answered something that is not GraphQL") from None
        if body.get("errors"):
            raise RuntimeError("; ".join(e.get("message", str(e)) for e in body["errors"]))
        return body["data"]

    return query


def _failed(name: str, exc: BaseException) -> Check:
    lines = str(exc).strip().splitlines()
    return Check(name, False, f"{type(exc).__name__}: {lines[0] if lines else ''}")


# --- through the webserver ------------------------------------------------------------------------------------


def check_webserver(query: Query, url: str = "") -> Check:
    """The webserver answers a GraphQL query. Lets `Unreachable` through (the CLI's exit code 3)."""
    try:
        version = query("{ version }")["version"]
    except Unreachable:
        raise
    except Exception as exc:
        return _failed("webserver", exc)
    return Check("webserver", True, f"Dagster {version} answers GraphQL" + (f" at {url}" if url else ""))


DAEMON_HEALTH = """
{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy lastHeartbeatTime } } } }"""


def check_daemons(query: Query, max_age: float = HEARTBEAT_MAX_AGE, now: float | None = None) -> Check:
    """Every daemon the instance requires is healthy by Dagster's measure and beat within `max_age` seconds."""
    try:
        statuses = query(DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
    except Unreachable:
        raise
    except Exception as exc:
        return _failed("daemons", exc)
    now = time.time() if now is None else now
    required = [s for s in statuses if s["required"]]
    if not required:
        return Check("daemons", True, "the instance requires no daemon")
    problems, ages = [], []
    for status in required:
        beat = status["lastHeartbeatTime"]
        if beat is None:
            problems.append(f"{status['daemonType']}: no heartbeat (is `dagster-daemon run` running?)")
            continue
        ages.append(age := now - beat)
        if age > max_age:
            problems.append(f"{status['daemonType']}: last heartbeat {age:.0f} s ago (more than {max_age:g} s)")
        elif not status["healthy"]:
            problems.append(f"{status['daemonType']}: unhealthy (its last heartbeat reported errors)")
    if problems:
        return Check("daemons", False, "; ".join(problems))
    return Check("daemons", True, f"{len(required)} daemons beating, the latest heartbeat {min(ages):.0f} s ago, "
                                  f"the oldest {max(ages):.0f} s ago")


WORKSPACE = """
{ workspaceOrError { __typename
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } } } }
    ... on PythonError { message } } }"""


def check_code_location(query: Query, name: str = LOCATION) -> Check:
    """The code location is in the workspace, loaded, and without a load error."""
    check = "code location"
    try:
        workspace = query(WORKSPACE)["workspaceOrError"]
    except Unreachable:
        raise
    except Exception as exc:
        return _failed(check, exc)
    if workspace["__typename"] != "Workspace":
        return Check(check, False, f"the workspace did not load: {workspace.get('message', '').strip()}")
    entries = {e["name"]: e for e in workspace["locationEntries"]}
    entry = entries.get(name)
    if entry is None:
        return Check(check, False, f"{name} is not in the workspace (it has: {', '.join(sorted(entries)) or 'none'})")
    loaded = entry["locationOrLoadError"] or {}
    if loaded.get("__typename") == "PythonError":
        message = loaded.get("message", "").strip().splitlines()
        return Check(check, False, f"{name} failed to load: {message[-1] if message else 'error'}")
    if entry["loadStatus"] != "LOADED" or not loaded:
        return Check(check, False, f"{name} is still loading ({entry['loadStatus']})")
    return Check(check, True, f"{name} loaded")


# --- on this machine -------------------------------------------------------------------------------------------


def check_store(root: str | os.PathLike | None = None) -> Check:
    """Write a small probe object under `<root>/health/`, read it back and delete it (root: STORAGE_URL)."""
    from whisperx_assets.inputs.store import MediaStore, atomic_write

    check = "store"
    try:
        if root is None:
            from whisperx_assets.defs.settings import PipelineSettings

            root = PipelineSettings().storage_url
        store = MediaStore(root)
        probe = store.root / PROBE_PREFIX / f"probe-{uuid.uuid4().hex}"
        payload = b"whisperx-assets health probe\n"
        atomic_write(probe, lambda f: f.write(payload))
        try:
            if probe.read_bytes() != payload:
                return Check(check, False, f"{probe} reads back different bytes than were written")
        finally:
            probe.unlink()
    except Exception as exc:
        return Check(check, False, f"cannot write and delete {PROBE_PREFIX}/ in {root}: {type(exc).__name__}: "
                                   f"{str(exc).strip()}")
    return Check(check, True, f"{store.root} takes a write and a delete")


@contextlib.contextmanager
def _hub_offline():
    """HF_HUB_OFFLINE for the block: model resolution then refuses instead of downloading."""
    saved = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved


def _whisper(config) -> str:
    from whisperx_assets.speech.models import resolve_whisper_model

    with _hub_offline():
        resolved = resolve_whisper_model(config.whisper_model, Path(config.cache_dir), config.hf_token)
    return f"whisper {config.whisper_model} ({resolved.source})"


def _alignment(config) -> str:
    """The alignment the configuration asks for, where it can be known before the language is."""
    from whisperx_assets.speech.errors import ModelUnavailableError

    name = config.align_model
    if config.align_backend == "pocketsphinx" or (config.align_backend == "auto" and not name):
        if config.align_backend == "pocketsphinx" and find_spec("pocketsphinx") is None:
            raise ModelUnavailableError("ALIGN_BACKEND=pocketsphinx, but pocketsphinx is not installed")
        return f"alignment {config.align_backend}"
    if config.align_backend == "whisper":
        return "alignment whisper"
    if not name:  # wav2vec2 by language: known once the transcript is
        return "alignment wav2vec2 (model chosen by language)"
    if Path(name).expanduser().is_dir():
        return f"alignment {name} (local)"
    if "/" in name:  # a Hugging Face id: in the cache?
        try:
            from huggingface_hub import snapshot_download

            snapshot_download(name, local_files_only=True)
        except Exception as exc:
            raise ModelUnavailableError(f"alignment model {name!r} is not in the Hugging Face cache "
                                        f"({type(exc).__name__})") from None
        return f"alignment {name} (hub-cache)"
    import torch  # a torchaudio bundle name: as align.py looks for it

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    if not any(checkpoints.glob(f"*{name.lower().split('_')[0]}*")):
        raise ModelUnavailableError(f"alignment model {name} is not in the torch hub cache ({checkpoints})")
    return f"alignment {name} (torch hub cache)"


def _diarization(config) -> str:
    from whisperx_assets.speech.diarization import offline, pretrained
    from whisperx_assets.speech.errors import ModelUnavailableError

    if not config.diarize:
        return "diarization off"
    model = (config.diarization_model or "").strip()
    if model.lower() not in ("", "offline"):
        if Path(model).expanduser().exists():
            return f"diarization {model} (local)"
        if pretrained.cached_pipeline(model) is not None:
            return f"diarization {model} (hub-cache)"
        if config.hf_token:  # a run would download it
            raise ModelUnavailableError(f"diarization model {model!r} is not cached: a run would download it with "
                                        "HF_TOKEN (pre-place it in HF_HOME, or set DIARIZATION_MODEL=offline)")
    offline.bundled_segmentation_path()
    spec = find_spec("resemblyzer")
    if spec is None or not (Path(spec.origin).parent / "pretrained.pt").is_file():
        raise ModelUnavailableError("the offline diarization pipeline needs resemblyzer with its pretrained.pt")
    return "diarization offline" + (f" ({model} not cached, no HF_TOKEN)" if model.lower() not in ("", "offline")
                                    else "")


def check_models(config=None) -> Check:
    """The configured models (SpeechConfig from the environment) are present on this machine: resolved as a run
    resolves them, with the hub offline, so nothing is downloaded; nothing is loaded."""
    check = "models"
    try:
        if config is None:
            from whisperx_assets.speech.config import SpeechConfig

            config = SpeechConfig()
        found = [_whisper(config), _alignment(config), _diarization(config)]
    except Exception as exc:
        return Check(check, False, f"{type(exc).__name__}: {str(exc).strip()}")
    return Check(check, True, ", ".join(found))


# --- all together ----------------------------------------------------------------------------------------------


def run_checks(url: str, liveness: bool = False, timeout: float = TIMEOUT,
               max_age: float = HEARTBEAT_MAX_AGE) -> tuple[list[Check], bool]:
    """The checks (liveness: webserver and daemons only) and whether the webserver was reachable."""
    query = graphql(url, timeout)
    remote = [("webserver", lambda: check_webserver(query, url)), ("daemons", lambda: check_daemons(query, max_age))]
    if not liveness:
        remote.append(("code location", lambda: check_code_location(query)))
    checks: list[Check] = []
    reachable = True
    for name, check in remote:
        if not reachable:
            checks.append(Check(name, False, "not checked: the webserver cannot be reached"))
            continue
        try:
            checks.append(check())
        except Unreachable as exc:
            reachable = False
            checks.append(Check(name, False, f"cannot reach the Dagster webserver: {exc}"))
    if not liveness:
        checks += [check_store(), check_models()]
    return checks, reachable
