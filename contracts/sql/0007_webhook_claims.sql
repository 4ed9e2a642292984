-- A worker claims a pending webhook delivery before its POST, so that two notify
-- messages of one generation cannot both send it; a claim lapses by itself when the
-- worker that holds it dies mid-POST.
ALTER TABLE webhook_deliveries ADD COLUMN claimed_until timestamptz;
