"""The ingest API: accepts audio uploads, records jobs, and hands them to the workers."""
