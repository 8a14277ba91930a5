"""The speech engine: whisperX's stages (decode, transcribe, align, diarize, combine, export) as plain
functions over pandas DataFrames, usable without Dagster. See `engine.SpeechEngine`."""

from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.engine import ProcessResult, SpeechEngine
from whisperx_assets.speech.errors import MediaError, ModelUnavailableError
from whisperx_assets.speech.export import EXPORT_FORMATS, export

__all__ = ["EXPORT_FORMATS", "MediaError", "ModelUnavailableError", "ProcessResult", "SpeechConfig", "SpeechEngine",
           "export"]
