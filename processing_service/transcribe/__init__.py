"""transcribe: openai-whisper per chunk, checkpoint rebuilding, stitching and fan-in."""
