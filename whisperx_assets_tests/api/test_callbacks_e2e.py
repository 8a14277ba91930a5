"""`submit --callback-url` on a real webserver and daemon: when each submitted run ends, its summary is POSTed
once to a local HTTP server run by the test. The deployment allows private addresses (the callback goes to
127.0.0.1) and runs the stand-in engine: the orchestration is under test, not the models."""

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dagster._core.scheduler.instigation import InstigatorType

from whisperx_assets_tests.api.test_api import cli
from whisperx_assets_tests.test_faults import wait_for

pytestmark = pytest.mark.slow

ALLOW = {"FETCH_ALLOW_PRIVATE_ADDRESSES": "1"}
SENSORS = ("callback_on_success", "callback_on_failure", "callback_on_canceled")


class Hook(BaseHTTPRequestHandler):
    posts: list = []

    def do_POST(self):
        Hook.posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def hook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def callback_deployment(standin):
    deployment, instance = standin
    # A run status sensor's first tick starts it at the latest event: runs that end before it are not seen.
    wait_for(lambda: started(instance) >= set(SENSORS), 120, "first callback sensor ticks", deployment)
    return deployment


def started(instance) -> set[str]:
    """The sensors whose first tick has set their cursor."""
    return {state.instigator_name for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
            if state.instigator_data and state.instigator_data.cursor}


def test_each_submitted_run_calls_back_once(callback_deployment, hook, short_dialogue, tmp_path):
    url = callback_deployment.url
    good, bad = tmp_path / "callback-talk.wav", tmp_path / "callback-broken.wav"
    shutil.copy(short_dialogue.path, good)
    bad.write_bytes(b"these bytes are not audio " * 40)
    code, submitted, err = cli(url, "submit", good, bad, "--callback-url", hook, env=ALLOW)
    assert code == 0, err
    runs = {s["source"]: s for s in submitted}
    wait_for(lambda: len(Hook.posts) >= 2, 180, "two callbacks", callback_deployment)
    time.sleep(12)  # two more ticks of each sensor: nothing is sent twice
    posts = {p["run_id"]: p for p in Hook.posts}
    assert len(Hook.posts) == 2 and set(posts) == {s["run_id"] for s in submitted}, Hook.posts

    ok = posts[runs[str(good)]["run_id"]]
    assert ok["status"] == "SUCCESS" and ok["partition"] == runs[str(good)]["partition_key"] and ok["failure"] is None
    assert Path(ok["results"]["combined"]).is_file() and Path(ok["results"]["subtitles"]).is_dir()
    assert ok["source"] == str(good) and ok["dagster_url"] == f"http://ui.test/runs/{ok['run_id']}"

    failed = posts[runs[str(bad)]["run_id"]]
    assert failed["status"] == "FAILURE" and failed["partition"] == runs[str(bad)]["partition_key"]
    assert failed["results"] is None and failed["failure"].startswith("media:"), failed


def test_a_private_callback_url_is_refused_at_submit(short_dialogue):
    """Without FETCH_ALLOW_PRIVATE_ADDRESSES the CLI refuses the URL before it talks to the webserver."""
    code, data, err = cli("http://127.0.0.1:9", "submit", short_dialogue.path, "--callback-url",
                          "http://127.0.0.1:8080/hook", env={"FETCH_ALLOW_PRIVATE_ADDRESSES": ""})
    assert code == 2 and "--callback-url refused" in data["error"] and "loopback" in data["error"], (data, err)
