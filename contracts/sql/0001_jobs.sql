-- Jobs, their stages, their results, and the outbox the ingest relay publishes from.

CREATE TABLE jobs (
    id                uuid PRIMARY KEY,
    -- sha256 prefix of the API key that created the job; NULL when the API is open.
    owner             text,
    status            text        NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')),
    original_filename text        NOT NULL,
    content_type      text        NOT NULL,
    audio_format      text        NOT NULL,
    size_bytes        bigint      NOT NULL CHECK (size_bytes > 0),
    sha256            text        NOT NULL,
    storage_path      text        NOT NULL,
    options           jsonb       NOT NULL DEFAULT '{}',
    webhook_secret    text,
    error             text,
    warnings          jsonb       NOT NULL DEFAULT '[]',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz
);

-- Keyset pagination, newest first, per owner and optionally per status.
CREATE INDEX jobs_by_owner ON jobs (owner, created_at DESC, id DESC);
CREATE INDEX jobs_by_owner_status ON jobs (owner, status, created_at DESC, id DESC);

CREATE TABLE job_stages (
    job_id      uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    stage       text        NOT NULL,
    position    smallint    NOT NULL,
    state       text        NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'queued', 'running', 'succeeded', 'skipped', 'failed', 'dead')),
    attempts    integer     NOT NULL DEFAULT 0,
    error       text,
    started_at  timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (job_id, stage)
);

CREATE TABLE job_results (
    job_id     uuid        PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    document   jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Transactional outbox: a row is written with its job in one transaction and
-- published to RabbitMQ (with publisher confirms) by the relay, which then stamps
-- published_at. message_id is the AMQP/Dramatiq message id, stable across re-publishes.
CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    message_id   uuid        NOT NULL UNIQUE,
    job_id       uuid        REFERENCES jobs (id) ON DELETE CASCADE,
    queue        text        NOT NULL,
    actor        text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text
);

CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
