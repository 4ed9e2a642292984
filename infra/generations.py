"""Starting a new generation of a job: the SQL that re-diarization and replay share.

A generation is one run of a job to a terminal state, notified once. Re-running from
a stage starts a new one: the job is processing again, the warnings of the stages that
run again are dropped (a warning starts with its stage's name, see
`contracts.states.stage_warning`), that stage is queued and the ones after it pending.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from contracts.states import PIPELINE, WARNING_SEPARATOR, Stage

_WARNING_STAGE = f"split_part(w, '{WARNING_SEPARATOR.strip()}', 1)"
_NEW_GENERATION = (
    "UPDATE jobs SET status = 'processing', error = NULL, finished_at = NULL,"  # noqa: S608
    " generation = generation + 1, updated_at = now(),"
    " options = coalesce($3, options),"
    " warnings = (SELECT coalesce(jsonb_agg(w), '[]'::jsonb)"
    "   FROM jsonb_array_elements_text(warnings) AS w"
    "   WHERE " + _WARNING_STAGE + " <> ALL($2::text[]))"
    " WHERE id = $1 RETURNING generation"
)

_RESET_STAGES = (
    "UPDATE job_stages SET state = CASE WHEN stage = $2 THEN 'queued' ELSE 'pending' END,"
    " attempts = 0, error = NULL, started_at = NULL, finished_at = NULL"
    " WHERE job_id = $1 AND stage = ANY($3::text[])"
)


_SUPERSEDE_DELIVERIES = (
    "UPDATE webhook_deliveries SET state = 'dead', claimed_until = NULL, updated_at = now(),"
    " last_error = 'superseded by generation ' || $2"
    " WHERE job_id = $1 AND generation < $2 AND state = 'pending'"
)


async def start_generation(
    conn: asyncpg.Connection,
    job_id: uuid.UUID,
    first: Stage,
    options: dict[str, Any] | None = None,
) -> int:
    """Start the job's next generation from `first` (in the caller's transaction).

    `options`, when given, replace the job's options. Returns the new generation.
    """
    stages = [stage.value for stage in PIPELINE[PIPELINE.index(first) :]]
    generation: int = await conn.fetchval(_NEW_GENERATION, job_id, stages, options)
    await conn.execute(_RESET_STAGES, job_id, first.value, stages)
    # Workers drop the older generation's messages, so its pending webhook will not be
    # attempted again: say so on the delivery instead of leaving it pending for ever.
    await conn.execute(_SUPERSEDE_DELIVERIES, job_id, generation)
    return generation
