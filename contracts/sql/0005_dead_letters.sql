-- Every message a worker gave up on, with the reason: visible on the job long after
-- RabbitMQ's 7-day retention of the dead-letter queue, and stamped when replayed.
CREATE TABLE dead_letters (
    id          bigserial   PRIMARY KEY,
    job_id      uuid        REFERENCES jobs (id) ON DELETE CASCADE,
    stage       text        NOT NULL,
    queue       text        NOT NULL,
    message_id  text        NOT NULL,
    reason      text        NOT NULL,
    dead_at     timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz
);
CREATE INDEX dead_letters_by_job ON dead_letters (job_id, id);
CREATE INDEX dead_letters_by_message ON dead_letters (message_id, id);
