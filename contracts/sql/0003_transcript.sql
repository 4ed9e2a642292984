-- The stitched transcript as transcribed, before any speaker attribution: diarization
-- (and re-diarization with new speaker hints) always starts again from it.
ALTER TABLE job_results ADD COLUMN transcript jsonb;
