-- The message a worker gave up on, so that `make replay-dlq` can rebuild it from here
-- once RabbitMQ has dropped it from the dead-letter queue (after 7 days).
ALTER TABLE dead_letters ADD COLUMN payload jsonb;
