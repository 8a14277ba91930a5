"""Parquet IO manager: `<root>/<asset>/<partition>.parquet` in the media store (a folder or an object store),
one file per partition, written atomically.

Dagster's `UPathIOManager` (universal_pathlib over fsspec) loads the partitions; it refuses to store an
output that covers several partitions, and a step covers one partition or a batch of them, so assets return
{partition key: DataFrame} and `handle_output` stores each key in its own file, with its own `path` metadata.
`run_stage` has usually written each file already, as soon as that file was done (see `stage_guard`); what
this run's work wrote is not written twice.
"""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
from dagster import (ConfigurableIOManagerFactory, DagsterInvariantViolationError, InputContext, MetadataValue,
                     OutputContext, UPathIOManager)
from upath import UPath

from whisperx_assets.defs.jobs import work_id
from whisperx_assets.inputs.store import MediaStore, StageOutput


class PartitionedParquetIOManager(UPathIOManager):
    def __init__(self, store: MediaStore):
        super().__init__(base_path=store.root)
        self.store = store

    def get_path_for_partition(self, context: InputContext | OutputContext, path: UPath, partition: str) -> UPath:
        return self.store.output_path(context.asset_key.to_python_identifier(), partition)

    def load_partitions(self, context: InputContext) -> dict[str, pd.DataFrame]:
        """{partition key: DataFrame}, also for one partition (the base class returns that one alone)."""
        paths = self._get_paths_for_partitions(context)
        return {key: self._load_partition_from_path(context, key, paths[key]) for key in sorted(context.asset_partition_keys)}

    def load_from_path(self, context: InputContext, path: UPath) -> pd.DataFrame:
        with path.open("rb") as f:
            return pq.read_table(f).to_pandas()

    def dump_to_path(self, context: OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        raise NotImplementedError("handle_output stores each partition")

    def handle_output(self, context: OutputContext, obj: dict[str, pd.DataFrame]) -> None:
        expected = set(context.asset_partition_keys)
        if not isinstance(obj, dict) or set(obj) != expected:  # Dagster records every planned partition
            got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise TypeError(f"{context.asset_key.to_user_string()} must return one DataFrame per partition "
                            f"{sorted(expected)}, got {got}")
        try:
            step = context.step_context
        except DagsterInvariantViolationError:  # a bare context (`build_output_context`)
            step = None
        work = work_id(step.dagster_run) if step is not None else ""
        asset = context.asset_key.to_python_identifier()
        for key, frame in obj.items():
            path = self.store.output_path(asset, key)
            if not work or self.store.written_by(asset, key) != work:
                self.store.write_output(asset, key, StageOutput(frame), work)
            if step is not None:
                step.add_asset_metadata({"path": MetadataValue.path(str(path))}, asset_key=context.asset_key,
                                        partition_key=key)


class ParquetIOManager(ConfigurableIOManagerFactory):
    """Asset outputs as Parquet files in the media store (STORAGE_URL)."""

    root: str

    def create_io_manager(self, context) -> PartitionedParquetIOManager:
        return PartitionedParquetIOManager(MediaStore(self.root))
