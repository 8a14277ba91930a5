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
    """`query(document) -> data` through `WhisperXClient` at `url`. No answer (refused, or none within `timeout`
    seconds) raises `Unreachable`; any other failure a RuntimeError that says what came back."""
    from dagster_graphql import DagsterGraphQLClientError

    from whisperx_assets.api.client import WhisperXClient

    client = WhisperXClient(url, timeout=timeout)

    def query(document: str) -> dict:
        try:
            return client.query(document)
        except DagsterGraphQLClientError as exc:
            raise _answer_error(exc, client.url) from None

    return query


def _answer_error(exc: BaseException, url: str) -> Exception:
    """The client's error in its causes' words (it wraps gql's, which wraps requests'; its own repeats the query)."""
    import requests
    from gql.transport.exceptions import TransportQueryError

    while exc.__cause__ is not None:
        exc = exc.__cause__
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            return Unreachable(f"no answer from {url} ({type(exc).__name__})")
        if isinstance(exc, TransportQueryError) and exc.errors:
            return RuntimeError("; ".join(e.get("message", str(e)) for e in exc.errors))
    return RuntimeError(str(exc))


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
    from whisperx_assets.speech.align import resolve_alignment

    choice = resolve_alignment(config)
    if choice.source:
        return f"alignment {choice.model} ({choice.source})"
    return f"alignment {choice.backend}" + (" (model chosen by language)" if choice.backend == "wav2vec2" and
                                            choice.model is None else "")


def _diarization(config) -> str:
    from whisperx_assets.speech.diarization import resolve_diarization

    if not config.diarize:
        return "diarization off"
    choice = resolve_diarization(config, download=False)
    if choice.origin != "offline":
        return f"diarization {choice.pipeline} ({choice.origin})"
    return "diarization offline" + (f" ({choice.pipeline} not cached, no HF_TOKEN)" if choice.pipeline else "")


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
