"""Parquet IO manager: `<base_dir>/<asset>/<partition>.parquet`, one file per partition, written atomically.

A step covers one partition or a batch of them, so assets take and return {partition key: DataFrame}; each
key still gets its own file, and its own `path` metadata on its materialization.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from dagster import ConfigurableIOManager, DagsterInvariantViolationError, InputContext, MetadataValue, OutputContext

from whisperx_assets.partitions import is_valid_key
from whisperx_assets.store import atomic_write_bytes


class ParquetIOManager(ConfigurableIOManager):
    base_dir: str

    def path_for(self, asset_key_path: list[str], partition_key: str) -> Path:
        if not is_valid_key(partition_key):
            raise ValueError(f"invalid partition key {partition_key!r}")
        return Path(self.base_dir).joinpath(*asset_key_path) / f"{partition_key}.parquet"

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
        for key, frame in obj.items():
            path = self.path_for(context.asset_key.path, key)
            atomic_write_bytes(path, lambda tmp, frame=frame: frame.to_parquet(tmp, index=False))
            if step is not None:
                step.add_asset_metadata({"path": MetadataValue.path(str(path))}, asset_key=context.asset_key,
                                        partition_key=key)

    def load_input(self, context: InputContext) -> dict[str, pd.DataFrame]:
        return {key: pd.read_parquet(self.path_for(context.asset_key.path, key))
                for key in sorted(context.asset_partition_keys)}
