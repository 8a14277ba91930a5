"""Materialization metadata shared by the tabular assets: row count, column schema, a preview, stage facts.

Recorded per partition (`add_asset_metadata(..., partition_key=...)`), so a file processed in a batch run
shows its own figures, also when its output was finished by an earlier attempt of the same work."""

from __future__ import annotations

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, TableColumn, TableSchema

from whisperx_assets.speech.frames import StageFacts
from whisperx_assets.inputs.store import StageOutput

PREVIEW_ROWS = 10
UNPREVIEWED = ("embedding",)  # 256 numbers per row tell a reader nothing
DECIMALS = 3  # metadata floats shown to the millisecond / three decimals (the stored facts keep full precision)


def readable(value):
    """A float rounded for reading in the UI: 3 decimals (seconds to the millisecond, ratios and probabilities),
    or 3 significant digits below 0.1 so a small ratio does not read as 0. Anything else as it is."""
    if not isinstance(value, float) or value != value or value in (float("inf"), float("-inf")):
        return value
    if value == 0 or abs(value) >= 0.1:
        return round(value, DECIMALS)
    return float(f"{value:.{DECIMALS}g}")


def stage_output(frame: pd.DataFrame, facts: StageFacts | None = None, **extra) -> StageOutput:
    """A file's output with its stage facts and other figures (plain values, kept beside the Parquet)."""
    values = {**(facts.as_dict() if facts else {}), **extra}
    return StageOutput(frame, {k: v for k, v in values.items() if v is not None and k != "stage"})


def frame_metadata(frame: pd.DataFrame, **values) -> dict:
    return {
        "dagster/row_count": len(frame),
        "dagster/column_schema": TableSchema(columns=[TableColumn(name=str(c), type=str(t))
                                                      for c, t in frame.dtypes.items()]),
        "preview": MetadataValue.md(frame.head(PREVIEW_ROWS).drop(columns=[c for c in UNPREVIEWED if c in frame])
                                    .to_markdown(index=False) if len(frame) else "(no rows)"),
        **{name: readable(value) for name, value in values.items()},
    }


def record(context: AssetExecutionContext, key: str, output: StageOutput, **extra) -> pd.DataFrame:
    """Attach `frame_metadata` to partition `key`'s materialization; returns the frame."""
    context.add_asset_metadata(frame_metadata(output.frame, **output.facts, **extra), partition_key=key)
    return output.frame
