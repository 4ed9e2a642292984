-- Starts of each chunk's transcription. The transcribe stage's own attempts count every
-- chunk of a job, so they cannot tell a chunk that keeps killing its worker (a kill -9
-- or an out-of-memory death, which Dramatiq's retry count never sees) from a long job.
ALTER TABLE job_chunks ADD COLUMN attempts integer NOT NULL DEFAULT 0;
