-- Jobs whose audio the workers fetch from a URL instead of receiving an upload.

-- The request headers the client gave for its source (credentials, often): read by the
-- worker that fetches, never shown by the API nor logged.
ALTER TABLE jobs ADD COLUMN source_headers jsonb;
-- Where the audio comes from, without query string or user info (shown on the job).
ALTER TABLE jobs ADD COLUMN source_url text;
-- A fetched job's size and hash are known only once its worker has the file.
ALTER TABLE jobs DROP CONSTRAINT jobs_size_bytes_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_size_bytes_check CHECK (size_bytes >= 0);
