-- What `split` learns about the audio, and the chunks that `transcribe` fans out over.

ALTER TABLE jobs ADD COLUMN audio jsonb;

CREATE TABLE job_chunks (
    job_id         uuid             NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx            integer          NOT NULL,
    start_s        double precision NOT NULL,
    end_s          double precision NOT NULL,
    audio_path     text             NOT NULL,
    -- The chunk's transcript (language and segments with absolute times) once done.
    transcript     jsonb,
    transcribed_at timestamptz,
    PRIMARY KEY (job_id, idx)
);
