"""Parquet IO manager: `<base_dir>/<asset>/<partition>.parquet`, one file per partition, written atomically.

A step that materializes several partitions at once (a multi-partition run) returns a dict of
{partition key: DataFrame}; each key still gets its own file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext

from whisperx_assets.partitions import is_valid_key
from whisperx_assets.store import atomic_write_bytes


class ParquetIOManager(ConfigurableIOManager):
    base_dir: str

    def path_for(self, asset_key_path: list[str], partition_key: str) -> Path:
        if not is_valid_key(partition_key):
            raise ValueError(f"invalid partition key {partition_key!r}")
        return Path(self.base_dir).joinpath(*asset_key_path) / f"{partition_key}.parquet"

    def handle_output(self, context: OutputContext, obj: pd.DataFrame | dict[str, pd.DataFrame]) -> None:
        frames = obj if isinstance(obj, dict) else {context.asset_partition_key: obj}
        for key, frame in frames.items():
            path = self.path_for(context.asset_key.path, key)
            atomic_write_bytes(path, lambda tmp, frame=frame: frame.to_parquet(tmp, index=False))
        if len(frames) == 1:
            context.add_output_metadata({"path": MetadataValue.path(str(path))})

    def load_input(self, context: InputContext) -> pd.DataFrame | dict[str, pd.DataFrame]:
        keys = context.asset_partition_keys
        frames = {key: pd.read_parquet(self.path_for(context.asset_key.path, key)) for key in keys}
        return frames[keys[0]] if len(keys) == 1 else frames
