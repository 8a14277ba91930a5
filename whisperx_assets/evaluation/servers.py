"""A real deployment for end-to-end tests: dagster-webserver and dagster-daemon on a temporary DAGSTER_HOME."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from whisperx_assets.inputs.sources import identify, location
from whisperx_assets.inputs.store import copy_file, is_local

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    # A new session (process group) so the whole tree is stopped together; default signal handling restored
    # because a background shell may have left SIGINT/SIGTERM ignored.
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True,
                            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, []))


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/server_info", timeout=5)
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(log.read_text()[-3000:])
            time.sleep(1)


DEPLOYMENTS: dict[str, "Deployment"] = {}  # url -> the running deployment (see `restart_webserver`)


def restart_webserver(url: str, down_for: float = 5.0) -> None:
    """Kill a running deployment's webserver as a crash would, leave it down `down_for` seconds, then start a
    new one on the same port and DAGSTER_HOME."""
    running = DEPLOYMENTS[url]
    os.killpg(running.webserver.pid, signal.SIGKILL)
    running.webserver.wait()
    time.sleep(down_for)
    running.start_webserver()


@contextlib.contextmanager
def deployment(root: Path, env: dict | None = None):
    """(url, inbox, storage, root) of a running webserver and daemon."""
    running = Deployment(root, env).start()
    DEPLOYMENTS[running.url] = running
    try:
        yield running.url, running.inbox, running.storage, running.root
    finally:
        DEPLOYMENTS.pop(running.url)
        running.stop()


@contextlib.contextmanager
def running(deployment: "Deployment", prepare=None):
    """(deployment, its instance) with the deployment started, after `prepare(instance)` if given (e.g. pool
    limits the daemon must see from its start); every process it started is stopped after."""
    from dagster import DagsterInstance

    try:
        with environment(deployment.env):
            instance = DagsterInstance.from_config(str(deployment.home))
        with instance:
            if prepare is not None:
                prepare(instance)
            deployment.start()
            yield deployment, instance
    finally:
        deployment.stop()


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def write_instance_config(home: Path, postgres: bool) -> None:
    """DAGSTER_HOME/dagster.yaml as `make run` writes it: the embedded default, plus Postgres storage if asked."""
    parts = [REPO / "dagster.yaml", *([REPO / "deploy" / "storage.postgres.yaml"] if postgres else [])]
    (home / "dagster.yaml").write_text("".join(part.read_text() for part in parts))


@contextlib.contextmanager
def environment(env: dict):
    """os.environ as `env` inside the block (an instance config reads its variables when loaded)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class Deployment:
    """A webserver and a daemon on one DAGSTER_HOME, each started, stopped or killed on its own as a crash would
    (SIGKILL), and started again on the same instance, port and folders."""

    def __init__(self, root: Path, env: dict | None = None, workspace: str = "workspace.yaml"):
        """`env` may point INBOX_URL and STORAGE_URL elsewhere (a bucket); by default they, and SPEAKERS_DIR, are
        folders under `root`. `inbox` and `storage` are where they point, as paths (UPath for a bucket)."""
        self.root, self.home = root, root / "home"
        self.env = {**os.environ, "DAGSTER_HOME": str(self.home), "INBOX_URL": str(root / "inbox"),
                    "STORAGE_URL": str(root / "storage"), "SPEAKERS_DIR": str(root / "speakers"),
                    "SENSOR_INTERVAL": "2", "SENSOR_SETTLE_SECONDS": "1",
                    "PYANNOTE_METRICS_ENABLED": "0", **(env or {})}
        with environment(self.env):  # an object store's client reads its endpoint and keys from there
            self.inbox, self.storage = location(self.env["INBOX_URL"]), location(self.env["STORAGE_URL"])
            for folder in (self.home, self.inbox, self.storage):
                folder.mkdir(parents=True, exist_ok=True)
        write_instance_config(self.home, postgres="DAGSTER_POSTGRES_URL" in self.env)
        # Create the instance's databases before the webserver, the daemon and their code servers race to (their
        # concurrent alembic stamps can leave two heads, and the code location then fails to load).
        from dagster import DagsterInstance

        with environment(self.env):
            DagsterInstance.from_config(str(self.home)).dispose()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workspace = workspace
        self.webserver: subprocess.Popen | None = None
        self.daemon: subprocess.Popen | None = None
        self.logs: list[Path] = []
        self.groups: list[int] = []  # every process group started, also those whose leader was killed

    def drop(self, *files: tuple[Path, str]) -> list[str]:
        """Put local files into the inbox, each under its name, whole and at once as far as a tick can tell
        (written under hidden names first, then renamed or copied into place); their partition keys."""
        staged = []
        for source, name in files:
            staging = self.inbox / f".{name}"
            copy_file(location(source), staging)
            staged.append((staging, self.inbox / name))
        for staging, target in staged:
            if is_local(target):
                staging.rename(target)
            else:  # an object store copies in place, then the hidden object goes
                staging.fs.copy(staging.path, target.path)
                staging.unlink()
        return [identify(target).key for _, target in staged]

    def _start(self, args: list[str], name: str) -> subprocess.Popen:
        process = start(args, self.env, self._log(name))
        self.groups.append(process.pid)
        return process

    def _log(self, name: str) -> Path:
        earlier = sum(log.name.startswith(f"{name}.") for log in self.logs)
        self.logs.append(self.root / (f"{name}.{earlier}.log" if earlier else f"{name}.log"))
        return self.logs[-1]

    def start(self) -> "Deployment":
        self.start_webserver()
        self.start_daemon()
        return self

    def start_webserver(self) -> None:
        self.webserver = self._start([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port),
                                      "-w", self.workspace], "webserver")
        wait_until_up(self.url, self.webserver, self.logs[-1])

    def start_daemon(self) -> None:
        self.daemon = self._start([str(BIN / "dagster-daemon"), "run", "-w", self.workspace], "daemon")

    def kill_daemon_process(self) -> None:
        """SIGKILL the daemon process alone: its code server and the runs that one started live on."""
        os.kill(self.daemon.pid, signal.SIGKILL)
        self.daemon.wait()

    def kill_all(self) -> None:
        """SIGKILL every process of the deployment at once, as a power loss or the OOM killer taking the tree."""
        processes = [p for p in (self.webserver, self.daemon) if p is not None and p.poll() is None]
        pids = [pid for p in processes for pid in [p.pid, *descendants(p.pid)]]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for p in processes:
            p.wait()

    def stop(self) -> None:
        """SIGTERM every process group ever started (orphaned code servers and run workers too), then SIGKILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for group in self.groups:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, sig)
            deadline = time.monotonic() + 20
            while sig == signal.SIGTERM and time.monotonic() < deadline and any(self._alive(g) for g in self.groups):
                for process in (self.daemon, self.webserver):
                    if process is not None:
                        process.poll()  # reap, so a zombie does not count as alive
                time.sleep(0.5)
        for process in (self.daemon, self.webserver):
            if process is not None:
                process.wait()

    @staticmethod
    def _alive(group: int) -> bool:
        try:
            os.killpg(group, 0)
            return True
        except ProcessLookupError:
            return False

    def log_tail(self, chars: int = 4000) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-chars:]}" for log in self.logs if log.exists())
