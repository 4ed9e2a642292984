"""Processing service: transcription, diarization and analysis workers."""
