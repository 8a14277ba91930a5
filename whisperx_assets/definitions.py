"""The Dagster code location: assets, checks, resources, IO manager, job and sensors."""

from dagster import Definitions

from whisperx_assets.defs.assets import ASSETS
from whisperx_assets.defs.io_managers import ParquetIOManager
from whisperx_assets.defs.jobs import process_media_job
from whisperx_assets.defs.resources import MediaStoreResource, WhisperXResource
from whisperx_assets.defs.sensors import media_inbox_sensor, split_failed_batch_sensor
from whisperx_assets.defs.settings import PipelineSettings

storage_dir = str(PipelineSettings().storage_dir.resolve())

defs = Definitions(
    assets=ASSETS,
    jobs=[process_media_job],
    sensors=[media_inbox_sensor, split_failed_batch_sensor],
    resources={
        "whisperx": WhisperXResource(),
        "storage": MediaStoreResource(root=storage_dir),
        "io_manager": ParquetIOManager(base_dir=storage_dir),
    },
)
