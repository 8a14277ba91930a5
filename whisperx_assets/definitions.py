"""The Dagster code location: assets, checks, resources, IO manager, job and sensors."""

from dagster import Definitions

from whisperx_assets.defs.assets import ASSETS, COLLECTION_ASSETS
from whisperx_assets.defs.callbacks import CALLBACK_SENSORS
from whisperx_assets.defs.io_managers import ParquetIOManager
from whisperx_assets.defs.deletion import delete_media
from whisperx_assets.defs.jobs import process_media_job
from whisperx_assets.defs.resources import MediaStoreResource, WhisperXResource
from whisperx_assets.defs.sensors import media_inbox_sensor, split_failed_batch_sensor
from whisperx_assets.defs.settings import PipelineSettings
from whisperx_assets.defs.speakers import refresh_speakers_job, speakers_sensor
from whisperx_assets.inputs.sources import location

storage_url = str(location(PipelineSettings().storage_url))

defs = Definitions(
    assets=[*ASSETS, *COLLECTION_ASSETS],
    jobs=[process_media_job, refresh_speakers_job, delete_media],
    sensors=[media_inbox_sensor, split_failed_batch_sensor, speakers_sensor, *CALLBACK_SENSORS],
    resources={
        "whisperx": WhisperXResource(),
        "storage": MediaStoreResource(root=storage_url),
        "io_manager": ParquetIOManager(root=storage_url),
    },
)
