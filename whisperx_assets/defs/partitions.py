"""The partitions: one dynamic partition per media file, keyed by `whisperx_assets.inputs.keys`."""

from dagster import DynamicPartitionsDefinition

media_files = DynamicPartitionsDefinition(name="media_files")
