"""transcribe: Whisper per chunk (openai-whisper, or CTranslate2: TRANSCRIBE_ENGINE),
checkpoint rebuilding, stitching and fan-in."""
