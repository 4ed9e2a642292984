-- A job's generation counts its runs: re-diarization starts a new one, whose terminal
-- state is notified (webhook and events) again. Event ids derive from it.
ALTER TABLE jobs ADD COLUMN generation integer NOT NULL DEFAULT 0;

-- One webhook delivery per job generation; its id is the `webhook-id` header, the same
-- on every attempt, so receivers can de-duplicate.
CREATE TABLE webhook_deliveries (
    id           uuid        PRIMARY KEY,
    job_id       uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    generation   integer     NOT NULL,
    event        text        NOT NULL,
    url          text        NOT NULL,
    state        text        NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'delivered', 'failed', 'dead')),
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    UNIQUE (job_id, generation)
);

CREATE TABLE webhook_attempts (
    id           bigserial   PRIMARY KEY,
    delivery_id  uuid        NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code  integer,
    error        text,
    duration_ms  integer     NOT NULL
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, id);
