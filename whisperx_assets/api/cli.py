"""`whisperx-assets`: submit media and follow the pipeline through Dagster's GraphQL API.

Exit codes: 0 done, 1 a run (or a `health` check) failed, 2 invalid arguments or options, 3 the webserver cannot
be reached, 4 no such run, partition or result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from whisperx_assets.speech.config import SpeechConfig, per_run_fields
from whisperx_assets.speech.export import EXPORT_FORMATS

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_NOT_FOUND = 0, 1, 2, 3, 4
DEFAULT_URL = "http://127.0.0.1:3000"
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RESULT_FORMATS = (*EXPORT_FORMATS, "parquet")


class CliError(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def speech_overrides(args) -> dict:
    """Per-run options, checked locally before anything is launched (the message names the allowed range)."""
    overrides = {field: getattr(args, field) for field in per_run_fields() if getattr(args, field, None) is not None}
    try:
        config = SpeechConfig(**overrides)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    # as parsed (a run config takes JSON values: lists, not tuples)
    return {field: list(v) if isinstance(v := getattr(config, field), tuple) else v for field in overrides}


def client(args):
    from whisperx_assets.api.client import WhisperXClient

    return WhisperXClient(args.url)


def call(fn, *a, **kw):
    """Run a client call, turning transport failures into the documented exit codes."""
    from dagster_graphql import DagsterGraphQLClientError

    from whisperx_assets.api.client import NotFound

    try:
        return fn(*a, **kw)
    except NotFound as exc:
        raise CliError(str(exc), EXIT_NOT_FOUND) from None
    except DagsterGraphQLClientError as exc:
        if _unreachable(exc):
            raise CliError(f"cannot reach the Dagster webserver at {fn.__self__.url} (start it with `make run`, "
                           "or pass --url / set DAGSTER_URL)", EXIT_UNREACHABLE) from None
        raise CliError(str(exc).strip(), EXIT_FAILED) from None


def _unreachable(exc: BaseException) -> bool:
    import requests

    while exc is not None:
        if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def emit(args, data, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print("\n".join(lines))


# --- commands -----------------------------------------------------------------------------------------


def supplied_files(args) -> dict[str, Path]:
    """The result files given with --transcript and --diarization: for one media file only."""
    files = {asset: path for asset in ("transcript", "diarization") if (path := getattr(args, asset, None))}
    if files and len(args.sources) != 1:
        raise CliError("--transcript and --diarization are for one media file at a time", EXIT_USAGE)
    return files


def cmd_submit(args) -> int:
    overrides = speech_overrides(args)
    supplied = supplied_files(args)
    if args.callback_url:  # refused before anything is launched, as a URL input would be
        from whisperx_assets.inputs.fetch import check_url

        try:
            check_url(args.callback_url)
        except (ValueError, RuntimeError) as exc:
            raise CliError(f"--callback-url refused: {exc}", EXIT_USAGE) from None
    c = client(args)
    submissions = []
    for source in args.sources:
        try:
            submissions.append(call(c.submit, source, overrides, force=args.force, callback_url=args.callback_url,
                                    stages=args.stages, supplied=supplied))
        except (FileNotFoundError, ValueError) as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    for s in submissions:
        if s.copied_to:
            print(f"whisperx-assets: copied {s.source} into the deployment's store ({s.copied_to}): the deployment "
                  "reads sources only from its SOURCE_ROOTS", file=sys.stderr)
        if args.callback_url and s.existing:
            print(f"whisperx-assets: no callback for {s.source}: it was already submitted (run {s.run_id}, which "
                  "calls back only if its submitter asked); --force launches a run that does", file=sys.stderr)
    already = {True: "\t(already submitted)", False: ""}
    if not args.wait:
        emit(args, [s.__dict__ for s in submissions],
             [f"{s.partition_key}\t{s.run_id}\t{s.source}{already[s.existing]}" for s in submissions])
        return EXIT_OK
    results = [{**wait_for(c, s.run_id, reconnect_timeout=args.reconnect_timeout), "existing": s.existing}
               for s in submissions]
    emit(args, results, [f"{r['partition']}\t{r['run_id']}\t{r['status']}{already[r['existing']]}"
                         + (f"\t{r['failure']}" if r["failure"] else "") for r in results])
    return EXIT_OK if all(r["status"] == "SUCCESS" for r in results) else EXIT_FAILED


def wait_for(c, run_id: str, poll: float = 2.0, reconnect_timeout: float = 300.0) -> dict:
    """Poll until the run ends, printing each step's state changes to stderr (stdout stays clean for --json).

    Runs go on without the webserver, so a lost connection (a restart) is waited out for up to
    `reconnect_timeout` seconds since the last answer. A crashed run that Dagster will retry is followed into
    its retry (the daemon gets as long to create it): the result is the last run's."""
    from whisperx_assets.api.client import RETRY_RUN, TERMINAL, WILL_RETRY

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    shown: dict[str, str] = {}
    answered, lost, crashed = time.monotonic(), False, None
    while True:
        try:
            run = call(c.run, run_id)
        except CliError as exc:
            if exc.code != EXIT_UNREACHABLE or time.monotonic() - answered > reconnect_timeout:
                raise
            if not lost:
                say(f"lost the connection to {c.url}; retrying for up to {reconnect_timeout:g} s")
            lost = True
            time.sleep(poll)
            continue
        if lost:
            say(f"connection to {c.url} is back")
        answered, lost = time.monotonic(), False
        for step, status in run["steps"].items():
            if shown.get(step) != status:
                say(f"  {run['partition']} {step}: {status.lower()}")
            shown[step] = status
        if run["status"] == "FAILURE" and run["tags"].get(WILL_RETRY) == "true":
            if retry := run["tags"].get(RETRY_RUN):
                say(f"run {run_id} crashed; following its retry {retry}")
                run_id, shown, crashed = retry, {}, None
                continue
            crashed = crashed or answered
            if answered - crashed < reconnect_timeout:  # the daemon has not created the retry yet
                time.sleep(poll)
                continue
        if run["status"] in TERMINAL:
            return run
        time.sleep(poll)


def cmd_status(args) -> int:
    c = client(args)
    target = args.target
    run = None
    if RUN_ID.fullmatch(target):  # a partition key can look like one too: then it is no run's id
        with contextlib.suppress(CliError):
            run = call(c.run, target)
    if run is None:
        run = call(c.latest_run_for_partition, target)
    if run is None:
        raise CliError(f"no run {target}, and no run for a partition {target}", EXIT_NOT_FOUND)
    lines = [f"run {run['run_id']}  partition {run['partition']}  {run['status']}"]
    lines += [f"  {step}: {status.lower()}" for step, status in run["steps"].items()]
    if run["failure"]:
        lines.append(f"failure: {run['failure']}")
    emit(args, run, lines)
    return EXIT_FAILED if run["status"] == "FAILURE" else EXIT_OK


def cmd_list(args) -> int:
    from whisperx_assets.defs.assets import ASSET_NAMES

    c = client(args)
    states, cursor = call(c.partition_states, args.limit, args.cursor)
    failed_assets = {key: next(a for a in ASSET_NAMES if state.get(a) == "failed") for key, state in states.items()
                     if "failed" in state.values()}
    reasons = call(c.failures, failed_assets)
    rows = [{"partition": key, **{a: state[a] for a in ASSET_NAMES if a in state},
             **({"failure": reasons[key]} if key in reasons else {})} for key, state in states.items()]
    lines = [f"{r['partition']}\t" + " ".join(f"{a}={r[a]}" for a in ASSET_NAMES if a in r)
             + (f"\tfailure: {r['failure']}" if r.get("failure") else "") for r in rows]
    emit(args, {"partitions": rows, "cursor": cursor}, lines or ["(no partitions)"])
    if cursor and not args.json:
        print(f"more: whisperx-assets list --cursor {cursor}", file=sys.stderr)
    return EXIT_OK


def cmd_result(args) -> int:
    c = client(args)
    if args.format == "parquet":
        path = call(c.output_path, "combined", args.partition)
    else:
        path = call(c.output_path, "subtitles", args.partition, "folder") / f"{args.partition}.{args.format}"
    if not path.is_file():
        raise CliError(f"{path} is not readable from here (is the store on another machine? Set STORAGE_URL's "
                       "credentials, e.g. AWS_ENDPOINT_URL, for an object store)", EXIT_NOT_FOUND)
    if args.output:
        Path(args.output).write_bytes(path.read_bytes())
        emit(args, {"partition": args.partition, "path": str(args.output)}, [str(args.output)])
    elif args.format == "parquet":
        sys.stdout.buffer.write(path.read_bytes())
    else:
        sys.stdout.write(path.read_text())
    return EXIT_OK


def cmd_delete(args) -> int:
    c = client(args)
    run = wait_for(c, call(c.delete, args.partitions), poll=0.5)
    if run["status"] != "SUCCESS":
        raise CliError(f"not deleted: {run['failure'] or run['status']}", EXIT_FAILED)
    removed = call(c.output_json, run["run_id"], "removed") or {}
    emit(args, {"run_id": run["run_id"], "removed": removed},
         [f"deleted {key}: its partition, materialization history and {len(files)} files"
          + "".join(f"\n  {path}" for path in files) for key, files in removed.items()])
    return EXIT_OK


def cmd_backfill(args) -> int:
    from whisperx_assets.defs.assets import ASSET_NAMES, with_downstream

    c = client(args)
    assets = ASSET_NAMES
    if args.stale:
        stale = call(c.stale_partitions)
        keys = sorted(stale)
        # Dagster marks the asset whose code version changed; what follows it is redone from its new result.
        assets = with_downstream(set().union(*stale.values()))
    else:
        keys = sorted(call(c.failed_partitions) if args.failed else call(c.partition_keys))
    if not keys:
        emit(args, {"backfill_id": None, "partitions": [], "assets": []}, ["nothing to backfill"])
        return EXIT_OK
    backfill_id = call(c.backfill, keys, assets)
    emit(args, {"backfill_id": backfill_id, "partitions": keys, "assets": list(assets)},
         [f"backfill {backfill_id}: {len(keys)} partitions ({', '.join(assets)})"])
    return EXIT_OK


def cmd_speakers(args) -> int:
    """Enroll people, name voices, list both. The deployment's `speakers_sensor` notices the change within its
    interval and re-names the files concerned."""
    from whisperx_assets.api.client import Unreadable
    from whisperx_assets.inputs.enrollment import enroll, name_voice

    c = client(args)
    try:
        if args.action == "list":
            people, voices = call(c.speakers)
            emit(args, {"people": people, "voices": voices},
                 [f"{p['name']}\t{p['clips']} clips, {p['seconds']} s" + (f"\tvoices {','.join(p['voices'])}"
                                                                          if p["voices"] else "") for p in people]
                 + [f"{v['voice_id']}\t{v['name'] or '(unnamed)'}\tin {v['files']} files" for v in voices]
                 or ["(nobody enrolled, no voice heard in more than one file)"])
            return EXIT_OK
        root = call(c.speakers_dir)
        if args.action == "enroll":
            copied = enroll(root, args.name, args.clips)
            lines = [f"enrolled {args.name}: {len(copied)} clips in {copied[0].parent}"]
        else:
            marker = name_voice(root, args.voice, args.name)
            lines = [f"named {args.voice} {args.name} ({marker})"]
    except (Unreadable, ValueError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    emit(args, {"ok": True, "detail": lines[0]},
         lines + ["speakers_sensor refreshes the voiceprints and re-names the files concerned within a minute"])
    return EXIT_OK


def cmd_health(args) -> int:
    """Readiness (all checks) or liveness (webserver and daemons): a line per check, or a JSON list."""
    from whisperx_assets.api.health import run_checks

    checks, reachable = run_checks(args.url, liveness=args.liveness, timeout=args.timeout,
                                   max_age=args.max_heartbeat_age)
    emit(args, [c.as_dict() for c in checks], [c.line() for c in checks])
    if not reachable:
        return EXIT_UNREACHABLE
    return EXIT_OK if all(c.ok for c in checks) else EXIT_FAILED


def cmd_process(args) -> int:
    """One-shot, no server: run the pipeline's job for each file in this process."""
    from whisperx_assets.api.client import supplied_config

    overrides = speech_overrides(args)
    try:
        supplied = supplied_config(supplied_files(args))
    except (OSError, ValueError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.TemporaryDirectory(prefix="whisperx-assets-")
    os.environ.setdefault("STORAGE_URL", scratch.name)  # before the definitions read it
    from dagster import DagsterInstance

    from whisperx_assets.api.client import JOB
    from whisperx_assets.definitions import defs
    from whisperx_assets.defs.settings import PipelineSettings
    from whisperx_assets.inputs.sources import identify
    from whisperx_assets.inputs.store import MediaStore

    job, store = defs.resolve_job_def(JOB), MediaStore(PipelineSettings().storage_url)
    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()

    def say(line: str) -> None:  # progress on stderr, as `submit --wait` shows it: stdout keeps the summaries
        print(line, file=sys.stderr, flush=True)
    summaries = []
    with instance, stdout_to_stderr() as real_stdout:
        for given in args.sources:
            started = time.perf_counter()
            try:
                source = identify(given)
            except (FileNotFoundError, ValueError) as exc:
                summaries.append({"source": given, "status": "FAILURE", "failure": str(exc)})
            else:
                summaries.append({"source": given, **process_one(job, instance, store, source, overrides, args.out,
                                                                 progress=say, supplied=supplied)})
                summaries[-1]["wall_seconds"] = round(time.perf_counter() - started, 2)
            if not args.json:
                real_stdout.write(format_summary(summaries[-1]) + "\n")
                real_stdout.flush()
    scratch.cleanup()
    if args.json:
        print(json.dumps(summaries, indent=2, default=str))
    return EXIT_FAILED if any(s["status"] != "SUCCESS" for s in summaries) else EXIT_OK


# Dagster's console log (every event, at DEBUG) would drown the progress lines: warnings and errors only.
QUIET_LOGGERS = {"console": {"config": {"log_level": "WARNING"}}}


def step_progress(name: str, say):
    """An event listener that calls `say` with a line as each step of `name`'s run finishes, fails or retries."""

    def on_event(entry) -> None:
        event = entry.dagster_event
        if event is None or not event.step_key:
            return
        kind, data = event.event_type_value, event.event_specific_data
        if kind == "STEP_SUCCESS":
            say(f"{name}: {event.step_key} done ({data.duration_ms / 1000:.1f} s)")
        elif kind == "STEP_FAILURE":
            lines = (data.error.message.strip().splitlines() or [""]) if data and data.error else [""]
            say(f"{name}: {event.step_key} FAILED {lines[0]}".rstrip())
        elif kind == "STEP_UP_FOR_RETRY":
            say(f"{name}: {event.step_key} failed, retrying")

    def listener(entry) -> None:
        with contextlib.suppress(Exception):  # progress is never worth failing a run for
            on_event(entry)

    return listener


def process_one(job, instance, store, source, overrides: dict, out: Path, progress=None,
                supplied: dict | None = None) -> dict:
    """Materialize every asset of `source`'s partition; copy its exports and combined table into `out`.
    `progress(line)` is called as each step finishes; `supplied`: {asset: run config} (`supplied_config`)."""
    from dagster._core.utils import make_new_run_id

    from whisperx_assets.api.client import media_config
    from whisperx_assets.defs.launcher import IN_PROCESS_PID_TAG
    from whisperx_assets.defs.partitions import media_files
    from whisperx_assets.inputs.sources import is_url, location
    from whisperx_assets.speech.errors import MediaError

    key = source.key
    if not is_url(source.source):  # this process reads the user's own file: no SOURCE_ROOTS to keep to
        try:
            store.ingest(key, location(source.source), source.name, source.sha256)
        except MediaError as exc:
            return {"partition": key, "status": "FAILURE", "failure": str(exc)}
    if not instance.has_dynamic_partition(media_files.name, key):
        instance.add_dynamic_partitions(media_files.name, [key])
    run_id = make_new_run_id()
    if progress is not None:
        instance.add_event_listener(run_id, step_progress(source.name, progress))
    result = job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False, run_id=run_id,
                                    tags={IN_PROCESS_PID_TAG: str(os.getpid())},
                                    run_config={"ops": {"media": {"config": media_config(source)},
                                                        **{a: {"config": c} for a, c in (supplied or {}).items()}},
                                                "resources": {"whisperx": {"config": overrides}},
                                                "loggers": QUIET_LOGGERS})
    summary = {"partition": key, "status": "SUCCESS" if result.success else "FAILURE"}
    if not result.success:
        failure = next((e for e in result.all_events if e.event_type_value == "STEP_FAILURE"), None)
        summary["failure"] = failure.event_specific_data.error.message.strip() if failure else "run failed"
        return summary
    facts = {m.asset_key.to_user_string(): m.materialization.metadata for m in result.get_asset_materialization_events()}
    summary.update(duration=facts["media"]["audio_seconds"].value, language=facts["transcript"]["language"].value,
                   speakers=facts["diarization"]["speakers"].value, words=facts["combined"]["dagster/row_count"].value)
    stem = Path(source.name).stem
    for path in store.subtitles_dir(key).iterdir():
        (out / f"{stem}{path.suffix}").write_bytes(path.read_bytes())
    (out / f"{stem}.parquet").write_bytes(store.output_path("combined", key).read_bytes())
    return summary


@contextlib.contextmanager
def stdout_to_stderr():
    """Libraries (whisperX's logger, C extensions) write to file descriptor 1; keep stdout for our output."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real_stdout = os.fdopen(os.dup(saved), "w")
    try:
        yield real_stdout
    finally:
        real_stdout.close()
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def format_summary(s: dict) -> str:
    if s["status"] != "SUCCESS":
        return f"FAILED {s['source']}: {s.get('failure')}"
    return (f"{s['source']}: {s['duration']:.1f} s, language {s['language']}, {s['speakers']} speakers, "
            f"{s['words']} words in {s['wall_seconds']:.1f} s -> {s['partition']}")


# --- parser -------------------------------------------------------------------------------------------


def add_speech_options(parser: argparse.ArgumentParser) -> None:
    """A flag for each per-run `SpeechConfig` field, with its description; values are checked by SpeechConfig."""
    group = parser.add_argument_group("per-run speech options (default: environment, then engine defaults)")
    for field, info in per_run_fields().items():
        flag = "--" + info.json_schema_extra.get("flag", field).replace("_", "-")
        if info.annotation is bool:
            group.add_argument(flag, dest=field, action=argparse.BooleanOptionalAction, help=info.description)
        else:
            group.add_argument(flag, dest=field, metavar=field.upper(), help=info.description)


def add_supplied_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transcript", type=Path, metavar="FILE",
                        help="use this transcript of the (one) file instead of Whisper's, force-aligned to its audio: "
                             "whisperX JSON, SRT, WebVTT or plain text (by extension)")
    parser.add_argument("--diarization", type=Path, metavar="FILE",
                        help="use these speaker turns (RTTM) of the (one) file instead of computing them")


def page_size(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def stage_list(text: str) -> list[str]:
    from whisperx_assets.defs.assets import ASSET_NAMES

    stages = [name.strip() for name in text.split(",") if name.strip()]
    if not stages or set(stages) - set(ASSET_NAMES):
        raise argparse.ArgumentTypeError(f"must be a comma-separated list of {','.join(ASSET_NAMES)}, got {text!r}")
    return stages


def global_options(parser: argparse.ArgumentParser, subcommand: bool) -> None:
    """--url and --json: on the main parser with their defaults, and on every subcommand with none (SUPPRESS),
    so either place works and a value given after the subcommand wins."""
    url = os.environ.get("DAGSTER_URL", DEFAULT_URL)
    parser.add_argument("--url", default=argparse.SUPPRESS if subcommand else url,
                        help=f"Dagster webserver (env DAGSTER_URL, default {url})".replace("%", "%%"))
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if subcommand else False,
                        help="machine-readable output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whisperx-assets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    global_options(parser, subcommand=False)
    sub = parser.add_subparsers(dest="command", required=True,
                                help="what to do (`whisperx-assets COMMAND --help` for its options)")

    p = sub.add_parser("submit", help="register inputs as partitions and launch a run for each")
    p.add_argument("sources", nargs="+", metavar="PATH|URL", help="media files (local paths) or http(s) URLs")
    p.add_argument("--wait", action="store_true", help="follow the runs; exit 1 if one fails")
    p.add_argument("--force", action="store_true",
                   help="launch a new run even if the same file with the same options is already submitted")
    p.add_argument("--reconnect-timeout", type=float, default=300, metavar="SECONDS",
                   help="with --wait: keep polling this long after the webserver stops answering (default %(default)s)")
    p.add_argument("--stages", type=stage_list, metavar="ASSET,...",
                   help="run only these assets (e.g. transcript,diarization) and those they need that the file "
                        "lacks; its other assets stay as they are (default: all)")
    add_supplied_options(p)
    p.add_argument("--callback-url", metavar="URL",
                   help="POST a JSON summary (status, partition, run_id, results, failure) there when each run ends")
    add_speech_options(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="state of a run, or of a partition's latest run, with the failure reason")
    p.add_argument("target", metavar="RUN_ID|PARTITION",
                   help="a run id, or a partition key (then its latest run, a batch run too)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("list", help="partitions with the state of each asset, newest first, a page at a time")
    p.add_argument("--limit", type=page_size, default=100, help="partitions per page (default %(default)s)")
    p.add_argument("--cursor", help="the page after the one that printed this cursor")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("result", help="a partition's transcript as a file")
    p.add_argument("partition", help="the partition key (as `submit` and `list` print it)")
    p.add_argument("--format", choices=RESULT_FORMATS, default="srt",
                   help="a subtitle/transcript export, or the combined word table as Parquet (default %(default)s)")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE (default: standard output)")
    p.set_defaults(func=cmd_result)

    p = sub.add_parser("process", help="one-shot: process files in this process (no server) into --out")
    p.add_argument("sources", nargs="+", metavar="PATH|URL", help="media files (local paths) or http(s) URLs")
    p.add_argument("--out", type=Path, required=True, metavar="FOLDER",
                   help="folder for each file's exports (<name>.srt, .vtt, ...) and combined table (<name>.parquet)")
    add_supplied_options(p)
    add_speech_options(p)
    p.set_defaults(func=cmd_process)

    p = sub.add_parser("delete", help="delete partitions for good: input copy, outputs, subtitles, source record, "
                                      "materialization history (refused while a run for one is in progress)")
    p.add_argument("partitions", nargs="+", metavar="PARTITION", help="partition keys (as `list` prints them)")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("backfill", help="re-run partitions through a Dagster backfill")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--failed", action="store_true", help="the partitions with a failed asset")
    which.add_argument("--all", action="store_true", help="every partition")
    which.add_argument("--stale", action="store_true",
                       help="the partitions whose assets were made with other models or options than the code "
                            "location's now (re-runs only those assets and what follows them)")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("speakers", help="enrolled people and voices heard across files: enroll, name, list")
    actions = p.add_subparsers(dest="action", required=True, help="what to do")
    a = actions.add_parser("enroll", help="add a person's voice clips (copied into SPEAKERS_DIR/NAME)")
    a.add_argument("name", metavar="NAME", help="the person's name, as transcripts will show it")
    a.add_argument("clips", nargs="+", type=Path, metavar="CLIP",
                   help="recordings of that person alone (any supported media file; 10 s or more in all)")
    a = actions.add_parser("name", help="name a voice heard across files (VOICE_0007) in every file that has it")
    a.add_argument("voice", metavar="VOICE_ID", help="as `speakers list` shows it")
    a.add_argument("name", metavar="NAME", help="the person's name")
    actions.add_parser("list", help="the enrolled people and the voices heard in more than one file")
    for action in actions.choices.values():
        global_options(action, subcommand=True)
    p.set_defaults(func=cmd_speakers)

    p = sub.add_parser("health", help="check the deployment: webserver, daemons, code location, store, models "
                                      "(exit 0 all pass, 1 one fails, 3 webserver unreachable)")
    p.add_argument("--liveness", action="store_true",
                   help="only the cheap checks, for a liveness probe: the webserver answers, the daemons beat "
                        "(default: readiness, every check)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="per request to the webserver (default %(default)s)")
    p.add_argument("--max-heartbeat-age", type=float, default=120.0, metavar="SECONDS",
                   help="a daemon's last heartbeat must be newer (default %(default)s; daemons beat every 30 s)")
    p.set_defaults(func=cmd_health)

    for subparser in sub.choices.values():
        global_options(subparser, subcommand=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        if args.json:
            print(json.dumps({"error": str(exc), "exit_code": exc.code}))
        else:
            print(f"whisperx-assets: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
