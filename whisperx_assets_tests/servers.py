"""A real deployment for end-to-end tests: dagster-webserver and dagster-daemon on a temporary DAGSTER_HOME."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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


@contextlib.contextmanager
def deployment(root: Path):
    home, inbox, storage = root / "home", root / "inbox", root / "storage"
    for folder in (home, inbox, storage):
        folder.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "INBOX_DIR": str(inbox), "STORAGE_DIR": str(storage),
           "SENSOR_INTERVAL": "2", "SENSOR_SETTLE_SECONDS": "1", "PYANNOTE_METRICS_ENABLED": "0"}
    webserver = start([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
                      env, root / "webserver.log")
    daemon = start([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env, root / "daemon.log")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline or webserver.poll() is not None:
                    raise RuntimeError((root / "webserver.log").read_text()[-3000:])
                time.sleep(1)
        yield url, inbox, storage, root
    finally:
        stop(daemon)
        stop(webserver)
