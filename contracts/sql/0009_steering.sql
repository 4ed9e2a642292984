-- Jobs a client can steer: cancel, delete, idempotent submits and live progress.

-- A stage that a cancel stopped (or that never ran because of one). A stage that was
-- running when the job was cancelled gets its finished_at only once its worker let go.
ALTER TABLE job_stages DROP CONSTRAINT job_stages_state_check;
ALTER TABLE job_stages ADD CONSTRAINT job_stages_state_check
    CHECK (state IN ('pending', 'queued', 'running', 'succeeded', 'skipped', 'failed', 'dead',
                     'cancelled'));

-- How far a running stage is, 0..1, as its worker last reported it.
ALTER TABLE job_stages ADD COLUMN progress real NOT NULL DEFAULT 0
    CHECK (progress >= 0 AND progress <= 1);
-- Seconds of a chunk's audio decoded so far: the transcribe stage's progress sums them.
ALTER TABLE job_chunks ADD COLUMN decoded_s double precision NOT NULL DEFAULT 0;

-- Jobs deleted by their client or by the retention sweep. Messages of a deleted job
-- still in a queue are dropped quietly instead of dead-lettered; rows older than the
-- dead-letter retention go with the sweep.
CREATE TABLE deleted_jobs (
    id         uuid        PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);

-- Idempotency-Key of POST /v1/jobs, per API key (owner '' on an open API): the same key
-- within its lifetime returns the job it first created.
CREATE TABLE idempotency_keys (
    owner       text        NOT NULL,
    key         text        NOT NULL,
    job_id      uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    fingerprint text        NOT NULL,
    -- The 202 answer it got, replayed as it was (the generated webhook secret included).
    response    jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- The retention sweep looks for finished jobs by age.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Every change of a job or of one of its stages is announced on channel `job_changes`
-- (payload: the job id), delivered when its transaction commits: the API's event streams
-- follow jobs through it, from whichever process made the change.
CREATE FUNCTION announce_job_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- TG_ARGV[0] names the column that holds the job id.
    PERFORM pg_notify('job_changes', to_jsonb(NEW) ->> TG_ARGV[0]);
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_announce AFTER UPDATE OF status, error, finished_at ON jobs
    FOR EACH ROW EXECUTE FUNCTION announce_job_change('id');
CREATE TRIGGER job_stages_announce AFTER UPDATE OF state, progress ON job_stages
    FOR EACH ROW EXECUTE FUNCTION announce_job_change('job_id');
