"""diarize: the pyannote pipeline, blocks and linking, the speaker embedding, attribution."""
