"""`ProcessRunLauncher`: Dagster's default launcher (each run a process of the code server), plus the worker
health check that Dagster's run monitoring needs to notice a run whose process is gone.

The default launcher cannot check its workers, so after the whole deployment dies (power loss, OOM killer,
container restart) an interrupted run stays STARTED for good and keeps its `gpu` slot. With this check the
daemon's run monitoring marks it failed, its pool slot is freed, and Dagster's run retries re-execute it
from the failed step (`dagster.yaml`).

A run worker is identified by the pid its code server reported ("Started process for run (pid: N)") and
that process's start time, so a pid reused after a reboot is not mistaken for the worker. A worker on
another machine (a remote code server) is asked about through that code server. A run executed in-process
by `whisperx-assets process` carries its process's pid as a tag (`IN_PROCESS_PID_TAG`) and is checked the
same way, so a killed `process` does not leave its run STARTED either.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRun
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher
from dagster._core.storage.tags import GRPC_INFO_TAG

IN_PROCESS_PID_TAG = "whisperx_assets/pid"
START_TOLERANCE_S = 2.0  # /proc start times are relative to a boot time known to the second


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (epoch seconds); None if there is no such live process (zombies count as
    gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def worker_process(instance: DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, time reported) of the run's latest worker process, from its code server's engine event."""
    for record in reversed(instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)):
        event = record.dagster_event
        pid = event.engine_event_data.metadata.get("pid") if event and event.engine_event_data else None
        if pid is not None and "Started process for run" in (event.message or ""):
            return int(pid.value), record.timestamp
    return None


def is_local(grpc_info: dict) -> bool:
    return "socket" in grpc_info or grpc_info.get("host") in (
        "localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn())


class ProcessRunLauncher(DefaultRunLauncher):
    """The default launcher with `check_run_worker_health`, so run monitoring recovers crashed runs."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        grpc_info = json.loads(run.tags.get(GRPC_INFO_TAG) or "null")
        if grpc_info is None:
            if IN_PROCESS_PID_TAG not in run.tags:  # another in-process execution: not ours to judge
                return CheckRunHealthResult(WorkerStatus.RUNNING, "not launched through a code server")
            created = self._instance.get_run_record_by_id(run.run_id).create_timestamp.timestamp()
            return self._check_local(int(run.tags[IN_PROCESS_PID_TAG]), created)
        if not is_local(grpc_info):
            return self._ask_code_server(run, grpc_info)
        worker = worker_process(self._instance, run.run_id)
        if worker is None:
            return CheckRunHealthResult(WorkerStatus.NOT_FOUND, "no run worker process was reported for this run")
        return self._check_local(*worker)

    @staticmethod
    def _check_local(pid: int, reported: float) -> CheckRunHealthResult:
        """Process `pid`, known to have been running at time `reported`, as this run's worker."""
        started = process_start_time(pid)
        if started is None or started > reported + START_TOLERANCE_S:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone (killed, out of "
                                                            "memory, or the machine restarted)")
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker process {pid} is alive")

    def _ask_code_server(self, run: DagsterRun, grpc_info: dict) -> CheckRunHealthResult:
        from dagster._grpc.client import DagsterGrpcClient
        from dagster._serdes import deserialize_value

        client = DagsterGrpcClient(port=grpc_info.get("port"), socket=grpc_info.get("socket"),
                                   host=grpc_info.get("host"), use_ssl=bool(grpc_info.get("use_ssl")))
        try:
            current = deserialize_value(client.get_current_runs()).current_runs
        except Exception as exc:  # the code server, and with it its run workers, is gone or unreachable
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, f"code server {grpc_info} unreachable: {exc}")
        if run.run_id in current:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "its code server reports it running")
        return CheckRunHealthResult(WorkerStatus.FAILED, "its code server no longer runs it")
