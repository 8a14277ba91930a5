"""Run callbacks (`defs.callbacks`): the POST and its retries against a local HTTP server, the address checks
of URL inputs, and which ended runs call back with what (an instance stand-in: no Dagster deployment)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from dagster import DagsterEventType, SkipReason
from dagster._core.storage.tags import WILL_RETRY_TAG

from whisperx_assets.defs.callbacks import CALLBACK_TAG, deliver, notify
from whisperx_assets.inputs.fetch import check_url
from whisperx_assets.defs.settings import PipelineSettings
from whisperx_assets.evaluation.servers import free_port
from whisperx_assets.inputs.fetch import FetchPolicy
from whisperx_assets.speech.errors import MediaError

LOCAL = FetchPolicy(allow_private=True)
STRICT = FetchPolicy(allow_private=False)


class Receiver(ThreadingHTTPServer):
    """Answers each POST with the next of `statuses` (then 200) and keeps (path, headers, JSON body) of each."""

    def __init__(self, statuses=()):
        self.statuses, self.posts = list(statuses), []
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append((self.path, dict(self.headers), json.loads(body)))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        if status in (301, 302):
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    servers = []

    def start(statuses=()):
        servers.append(Receiver(statuses))
        return servers[-1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_delivers_the_json_body(receiver):
    server = receiver()
    delivery = deliver(server.url("/hook?x=1"), {"status": "SUCCESS", "n": 1}, policy=LOCAL)
    assert delivery.delivered and delivery.attempts == 1 and delivery.outcome == "HTTP 200"
    [(path, headers, body)] = server.posts
    assert path == "/hook?x=1" and body == {"status": "SUCCESS", "n": 1}
    assert headers["Content-Type"] == "application/json"


def test_retries_a_5xx_with_backoff(receiver):
    server, waits = receiver([503, 502]), []
    delivery = deliver(server.url(), {"a": 1}, initial_interval=1.0, policy=LOCAL, sleep=waits.append)
    assert delivery.delivered and delivery.attempts == 3
    assert len(server.posts) == 3 and waits == [1.0, 2.0]


def test_a_4xx_is_not_retried(receiver):
    server, waits = receiver([400]), []
    delivery = deliver(server.url(), {"a": 1}, policy=LOCAL, sleep=waits.append)
    assert not delivery.delivered and delivery.attempts == 1 and delivery.outcome == "HTTP 400"
    assert len(server.posts) == 1 and waits == []


def test_a_redirect_is_not_followed(receiver):
    server = receiver([302])
    delivery = deliver(server.url(), {"a": 1}, policy=LOCAL, sleep=lambda s: None)
    assert not delivery.delivered and delivery.outcome == "HTTP 302" and len(server.posts) == 1


def test_connection_errors_are_retried_then_given_up():
    waits = []
    delivery = deliver(f"http://127.0.0.1:{free_port()}/hook", {"a": 1}, max_attempts=5, initial_interval=1.0,
                       policy=LOCAL, sleep=waits.append)
    assert not delivery.delivered and delivery.attempts == 5 and "cannot connect" in delivery.outcome
    assert waits == [1.0, 2.0, 4.0, 8.0]


def test_the_time_budget_bounds_the_retries():
    waits = []
    delivery = deliver(f"http://127.0.0.1:{free_port()}/hook", {"a": 1}, max_attempts=5, initial_interval=1.0,
                       timeout=1.0, budget=2.5, policy=LOCAL, sleep=waits.append)
    assert not delivery.delivered and delivery.attempts == 2 and "no time left" in delivery.outcome
    assert waits == [1.0]


def test_private_addresses_are_refused_without_the_setting(receiver, monkeypatch):
    server = receiver()
    delivery = deliver(server.url(), {"a": 1}, policy=STRICT, sleep=lambda s: None)
    assert not delivery.delivered and delivery.attempts == 1 and "loopback" in delivery.outcome
    assert "FETCH_ALLOW_PRIVATE_ADDRESSES" in delivery.outcome and server.posts == []
    monkeypatch.delenv("FETCH_ALLOW_PRIVATE_ADDRESSES", raising=False)
    for url in (server.url(), "http://10.1.2.3/hook", "http://169.254.169.254/latest", "ftp://example.org/x",
                "http://user:pw@example.org/hook", "http://2130706433/"):
        with pytest.raises(MediaError):
            check_url(url)
    monkeypatch.setenv("FETCH_ALLOW_PRIVATE_ADDRESSES", "1")
    check_url(server.url())


# ---------------------------------------------------------------------------------------------------------
# Which runs call back, with what


class Instance:
    """The few instance calls `notify` makes, over one run and its recorded events."""

    def __init__(self, run, steps=("media", "combined"), succeeded=(), failures=(), paths=None):
        self.run, self.steps, self.succeeded, self.failures, self.paths = run, steps, succeeded, failures, paths or {}

    def get_run_by_id(self, run_id):
        return self.run

    def get_execution_plan_snapshot(self, snapshot_id):
        return SimpleNamespace(step_keys_to_execute=list(self.steps))

    def get_run_step_stats(self, run_id):
        from dagster._core.execution.stats import StepEventStatus

        return [SimpleNamespace(step_key=s, status=StepEventStatus.SUCCESS) for s in self.succeeded]

    def all_logs(self, run_id, of_type=None):
        if of_type != DagsterEventType.STEP_FAILURE:
            return []
        return [SimpleNamespace(dagster_event=SimpleNamespace(
            step_key=step, step_failure_data=SimpleNamespace(error=SimpleNamespace(message=message + "\n"))))
            for step, message in self.failures]

    def fetch_materializations(self, records_filter, limit):
        path = self.paths.get(records_filter.asset_key.path[-1])
        metadata = {"path": SimpleNamespace(value=path), "folder": SimpleNamespace(value=path)}
        return SimpleNamespace(records=[SimpleNamespace(asset_materialization=SimpleNamespace(metadata=metadata))]
                               if path else [])

    def get_dynamic_partitions(self, name):
        return ["a-1", "b-2", "c-3"]


class Log:
    def __init__(self):
        self.lines = []

    def info(self, message):
        self.lines.append(("info", message))

    def error(self, message):
        self.lines.append(("error", message))


SETTINGS = PipelineSettings(callback_max_attempts=2, callback_initial_interval=0, callback_timeout=2,
                            callback_dagster_url="http://dagster.example/")


def run(tags):
    return SimpleNamespace(run_id="r-1", job_name="process_media", tags=tags, execution_plan_snapshot_id="s")


@pytest.fixture
def allow_private(monkeypatch):
    monkeypatch.setenv("FETCH_ALLOW_PRIVATE_ADDRESSES", "1")


def test_success_posts_the_results(receiver, allow_private):
    server = receiver()
    ended = run({CALLBACK_TAG: server.url(), "dagster/partition": "a-1", "whisperx_assets/source": "/in/a.wav"})
    instance = Instance(ended, paths={"combined": "/s/combined/a-1.parquet", "subtitles": "/s/subtitles/a-1"})
    log = Log()
    result = notify(instance, ended, "SUCCESS", log, SETTINGS)
    assert isinstance(result, SkipReason) and "delivered" in result.skip_message
    [(_, _, body)] = server.posts
    assert body == {"status": "SUCCESS", "partition": "a-1", "run_id": "r-1", "source": "/in/a.wav",
                    "results": {"combined": "/s/combined/a-1.parquet", "subtitles": "/s/subtitles/a-1"},
                    "failure": None, "dagster_url": "http://dagster.example/runs/r-1"}
    assert log.lines[0][0] == "info"


def test_a_final_failure_posts_the_reason(receiver, allow_private):
    server = receiver()
    ended = run({CALLBACK_TAG: server.url(), "dagster/partition": "a-1", WILL_RETRY_TAG: "false"})
    instance = Instance(ended, failures=[("media", "a.wav: not media")])
    notify(instance, ended, "FAILURE", Log(), SETTINGS)
    [(_, _, body)] = server.posts
    assert body["status"] == "FAILURE" and body["failure"] == "media: a.wav: not media" and body["results"] is None


def test_no_callback_while_dagster_will_retry_or_for_a_finished_run(receiver, allow_private):
    server = receiver()
    retried = run({CALLBACK_TAG: server.url(), "dagster/partition": "a-1", WILL_RETRY_TAG: "true"})
    result = notify(Instance(retried), retried, "FAILURE", Log(), SETTINGS)
    assert isinstance(result, SkipReason) and "retry" in result.skip_message
    finished = run({CALLBACK_TAG: server.url(), "dagster/partition": "a-1"})
    result = notify(Instance(finished, succeeded=("media", "combined")), finished, "FAILURE", Log(), SETTINGS)
    assert isinstance(result, SkipReason) and "every step" in result.skip_message
    assert server.posts == []


def test_runs_without_a_callback_are_passed_over(receiver):
    plain = run({"dagster/partition": "a-1"})
    assert notify(Instance(plain), plain, "SUCCESS", Log(), SETTINGS) is None


def test_a_batch_run_names_its_partitions(receiver, allow_private):
    server = receiver()
    batch = run({CALLBACK_TAG: server.url(), "dagster/asset_partition_range_start": "a-1",
                 "dagster/asset_partition_range_end": "b-2"})
    notify(Instance(batch), batch, "CANCELED", Log(), SETTINGS)
    [(_, _, body)] = server.posts
    assert body["partition"] == ["a-1", "b-2"] and body["status"] == "CANCELED" and body["results"] is None


def test_an_undeliverable_callback_is_logged_as_an_error(allow_private):
    ended = run({CALLBACK_TAG: f"http://127.0.0.1:{free_port()}/hook", "dagster/partition": "a-1"})
    log = Log()
    result = notify(Instance(ended), ended, "SUCCESS", log, SETTINGS)
    assert "NOT delivered" in result.skip_message and "2 tries" in result.skip_message
    assert log.lines[0][0] == "error"
