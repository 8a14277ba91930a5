"""The launcher's worker health check on real processes: alive, killed, a zombie, a reused pid. (The check
inside a real deployment, with processes killed, is in test_faults.)"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from dagster import asset, materialize
from dagster._core.events import EngineEventData
from dagster._core.launcher import WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

from whisperx_assets.defs.launcher import (IN_PROCESS_PID_TAG, START_TOLERANCE_S, ProcessRunLauncher, process_start_time,
                                      worker_process)


@asset
def trivial():
    return 1


@pytest.fixture
def launcher(instance):
    launcher = ProcessRunLauncher()
    launcher.register_instance(instance)
    return launcher


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def run_with(instance, tags):
    return instance.get_run_by_id(materialize([trivial], instance=instance, tags=tags).run_id)


def test_process_start_time():
    assert process_start_time(os.getpid()) <= time.time()
    child = sleeper()
    assert abs(process_start_time(child.pid) - time.time()) < 5
    child.kill()
    time.sleep(0.2)
    assert process_start_time(child.pid) is None  # a zombie (not reaped yet) counts as gone
    child.wait()
    assert process_start_time(child.pid) is None


def test_worker_reported_by_its_code_server(instance, launcher):
    child = sleeper()
    try:
        run = run_with(instance, {GRPC_INFO_TAG: json.dumps({"host": "localhost", "socket": "/tmp/none"})})
        assert launcher.check_run_worker_health(run).status == WorkerStatus.NOT_FOUND  # no worker reported yet
        instance.report_engine_event(f"Started process for run (pid: {child.pid}).", run,
                                     EngineEventData.in_process(child.pid))
        assert worker_process(instance, run.run_id)[0] == child.pid
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        result = launcher.check_run_worker_health(run)
        assert result.status == WorkerStatus.FAILED and "is gone" in result.msg
    finally:
        child.kill()


def test_a_pid_reused_by_a_later_process_is_not_the_worker(instance, launcher):
    earlier = run_with(instance, {})
    time.sleep(START_TOLERANCE_S + 1.5)  # /proc start times are known to about a second
    later = sleeper()  # started after the run was created: cannot be its worker (as after a reboot)
    try:
        instance.add_run_tags(earlier.run_id, {IN_PROCESS_PID_TAG: str(later.pid)})
        result = launcher.check_run_worker_health(instance.get_run_by_id(earlier.run_id))
        assert result.status == WorkerStatus.FAILED
        current = run_with(instance, {IN_PROCESS_PID_TAG: str(later.pid)})
        assert launcher.check_run_worker_health(current).status == WorkerStatus.RUNNING
    finally:
        later.kill()
        later.wait()


def test_in_process_runs(instance, launcher):
    assert launcher.check_run_worker_health(run_with(instance, {})).status == WorkerStatus.RUNNING  # not ours
    own = run_with(instance, {IN_PROCESS_PID_TAG: str(os.getpid())})
    assert launcher.check_run_worker_health(own).status == WorkerStatus.RUNNING
    child = sleeper()
    child.kill()
    child.wait()
    gone = run_with(instance, {IN_PROCESS_PID_TAG: str(child.pid)})
    assert launcher.check_run_worker_health(gone).status == WorkerStatus.FAILED


def test_a_remote_code_server_that_cannot_be_reached(instance, launcher):
    run = run_with(instance, {GRPC_INFO_TAG: json.dumps({"host": "code-server.invalid", "port": 4000})})
    assert launcher.check_run_worker_health(run).status == WorkerStatus.UNKNOWN
