-- Diarization runs alongside transcription, in blocks that are messages of their own
-- (a long recording's blocks spread over the heavy workers, each under the stage's time
-- limit). One row per block of one job generation: a re-diarization plans afresh.
CREATE TABLE job_speaker_blocks (
    job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    generation integer NOT NULL,
    idx integer NOT NULL CHECK (idx >= 0),
    start_s double precision NOT NULL,
    end_s double precision NOT NULL CHECK (end_s > start_s),
    -- Starts of this block's diarization: tells a block that keeps killing its worker.
    attempts integer NOT NULL DEFAULT 0,
    -- Fraction of the block done, while it runs (the stage's progress weighs blocks by length).
    progress real NOT NULL DEFAULT 0,
    -- The block's turns and its speakers' centroid embeddings, once diarized.
    result jsonb,
    finished_at timestamptz,
    PRIMARY KEY (job_id, generation, idx)
);

-- The diarization of a job generation, its blocks' speakers linked: kept until the
-- transcript is there to be attributed (whichever of the two finishes last does it).
CREATE TABLE job_speaker_turns (
    job_id uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    generation integer NOT NULL,
    turns jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
