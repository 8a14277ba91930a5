"""Materialization metadata shared by the tabular assets: row count, column schema, a preview, stage facts.

Recorded per partition (`add_asset_metadata(..., partition_key=...)`), so a file processed in a batch run
shows its own figures."""

from __future__ import annotations

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, TableColumn, TableSchema

from whisperx_assets.speech.frames import StageFacts

PREVIEW_ROWS = 10


def frame_metadata(frame: pd.DataFrame, facts: StageFacts | None = None, **extra) -> dict:
    metadata = {
        "dagster/row_count": len(frame),
        "dagster/column_schema": TableSchema(columns=[TableColumn(name=str(c), type=str(t))
                                                      for c, t in frame.dtypes.items()]),
        "preview": MetadataValue.md(frame.head(PREVIEW_ROWS).to_markdown(index=False) if len(frame) else "(no rows)"),
    }
    if facts is not None:
        for name, value in facts.as_dict().items():
            if value is not None and name != "stage":
                metadata[name] = value
    metadata.update({k: v for k, v in extra.items() if v is not None})
    return metadata


def record(context: AssetExecutionContext, key: str, frame: pd.DataFrame, facts: StageFacts | None = None,
           **extra) -> pd.DataFrame:
    """Attach `frame_metadata` to partition `key`'s materialization; returns `frame`."""
    context.add_asset_metadata(frame_metadata(frame, facts, **extra), partition_key=key)
    return frame
