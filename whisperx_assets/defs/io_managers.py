"""Parquet IO manager: `<base_dir>/<asset>/<partition>.parquet`, one file per partition, written atomically.

A step covers one partition or a batch of them, so assets take and return {partition key: DataFrame}; each
key still gets its own file, and its own `path` metadata on its materialization. `run_stage` has usually
written each file already, as soon as that file was done (see `stage_guard`); what this run's work wrote is
not written twice.
"""

from __future__ import annotations

import pandas as pd
from dagster import ConfigurableIOManager, DagsterInvariantViolationError, InputContext, MetadataValue, OutputContext

from whisperx_assets.defs.jobs import work_id
from whisperx_assets.inputs.store import MediaStore, StageOutput


class ParquetIOManager(ConfigurableIOManager):
    base_dir: str

    @property
    def store(self) -> MediaStore:
        return MediaStore(self.base_dir)

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

    def load_input(self, context: InputContext) -> dict[str, pd.DataFrame]:
        asset = context.asset_key.to_python_identifier()
        return {key: pd.read_parquet(self.store.output_path(asset, key)) for key in sorted(context.asset_partition_keys)}
