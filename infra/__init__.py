"""What both services need from the outside world, written once.

`contracts/` is the shared vocabulary and holds no IO; this package holds the shared
plumbing: reading the environment, logging set-up, Postgres codecs and migrations, the
webhook host check, and the SQL that starts a new job generation. Either service may
import it; it imports neither.
"""
