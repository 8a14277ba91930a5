"""`delete_media`: remove partitions for good (privacy requests), as a run in the deployment, which holds the
store: each partition's input copy, outputs, subtitles and source record (`MediaStore.delete`), its
materialization history (every event of the partition's assets and checks: `wipe_partition_history`), then the
partition itself. Refused, with the runs
named, while a run of `process_media` covering one of them is queued or in progress. Deleting twice is
harmless: a run that dies midway is simply launched again."""


from dagster import (AssetKey, Config, DagsterRunStatus, Failure, MetadataValue, Nothing, OpExecutionContext, Out,
                     Output, RunsFilter, in_process_executor, job, op)
from pydantic import Field

from whisperx_assets.defs.assets import ASSET_NAMES
from whisperx_assets.defs.assets.speakers import forget_voices
from whisperx_assets.defs.jobs import process_media_job, run_keys
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.resources import MediaStoreResource

IN_PROGRESS = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
               DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


class DeleteConfig(Config):
    partitions: list[str] = Field(description="the `media_files` partition keys to delete")


def runs_in_progress(instance, keys: list[str]) -> dict[str, list[str]]:
    """{partition key: ids of the unfinished `process_media` runs covering it} for `keys`."""
    order = instance.get_dynamic_partitions(media_files.name)
    position = {key: i for i, key in enumerate(order)}
    busy: dict[str, list[str]] = {}
    for run in instance.get_runs(filters=RunsFilter(job_name=process_media_job.name, statuses=IN_PROGRESS)):
        for key in set(run_keys(run.tags, order, position)) & set(keys):
            busy.setdefault(key, []).append(run.run_id)
    return busy


def wipe_partition_history(instance, key: str) -> int:
    """Delete every asset event (materializations, planned, failed, observations) and check execution of
    partition `key` of the pipeline's assets from the event log, and the assets' cached partition statuses;
    how many events. Dagster's `wipe_asset_partitions` does this only in Dagster+ ("not supported yet for this
    event log storage"); SQLite keeps each run's events in a file of its own besides the index, so those go too."""
    from sqlalchemy import select

    from dagster._core.storage.event_log.schema import (AssetCheckExecutionsTable, AssetEventTagsTable,
                                                        SqlEventLogStorageTable)

    storage = instance.event_log_storage
    assets = [AssetKey(name) for name in ASSET_NAMES]
    events = SqlEventLogStorageTable
    of_partition = events.c.asset_key.in_([a.to_string() for a in assets]) & (events.c.partition == key)
    with storage.index_connection() as conn:
        rows = conn.execute(select(events.c.id, events.c.run_id).where(of_partition)).fetchall()
        ids = [row[0] for row in rows]
        conn.execute(AssetEventTagsTable.delete().where(AssetEventTagsTable.c.event_id.in_(ids)))
        conn.execute(events.delete().where(of_partition))
        conn.execute(AssetCheckExecutionsTable.delete().where(
            AssetCheckExecutionsTable.c.asset_key.in_([a.to_string() for a in assets])
            & (AssetCheckExecutionsTable.c.partition == key)))
    if type(storage).__name__ == "SqliteEventLogStorage":  # run-sharded: the runs' own files
        for run_id in {row[1] for row in rows}:
            with storage.run_connection(run_id) as conn:
                conn.execute(events.delete().where(of_partition))
    instance.wipe_asset_cached_status(assets)
    return len(ids)


@op(out=Out(Nothing), description="Delete partitions: files in the store, materialization history, the partitions.")
def delete_partitions(context: OpExecutionContext, config: DeleteConfig, storage: MediaStoreResource):
    instance, keys = context.instance, list(dict.fromkeys(config.partitions))
    if unknown := [key for key in keys if not instance.has_dynamic_partition(media_files.name, key)]:
        raise Failure(f"no such partition: {', '.join(unknown)}; nothing deleted", allow_retries=False)
    if busy := runs_in_progress(instance, keys):
        named = "; ".join(f"{key} (run {', '.join(ids)})" for key, ids in busy.items())
        raise Failure(f"refused: a run is in progress for {named}; delete again once it has ended (or cancel it)",
                      allow_retries=False)
    removed = {}
    voices = forget_voices(storage.store, keys)
    for key in keys:
        removed[key] = [str(path) for path in storage.store.delete(key)]
        wiped = wipe_partition_history(instance, key)
        instance.delete_dynamic_partition(media_files.name, key)
        context.log.info(f"deleted {key}: {len(removed[key])} files, {wiped} events of its history, the partition")
    return Output(None, metadata={"removed": MetadataValue.json(removed), "voice_members_removed": voices})


@job(executor_def=in_process_executor, description="Delete media partitions with their files and history "
                                                   "(`whisperx-assets delete`).")
def delete_media():
    delete_partitions()
