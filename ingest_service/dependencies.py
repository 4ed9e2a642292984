"""What the handlers are given, as Litestar dependencies read from the app's state.

`create_app` puts the settings and API keys on the state; the lifespan adds the pool, the
outbox relay and the job-changes listener once they exist. Handlers name what they need
(`settings`, `pool`, `relay`, `jobs`, `job_changes`; `auth.provide_owner` takes
`api_keys`) with the aliases below and get it typed, instead of reaching into
`app.state`.
"""

from __future__ import annotations

import asyncpg
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import SkipValidation

from ingest_service.auth import ApiKeys
from ingest_service.config import Settings
from ingest_service.job_changes import JobChanges
from ingest_service.jobs_service import JobsService
from ingest_service.relay import OutboxRelay

# Handler and provider parameter types. These objects are ours and built once: Litestar
# would otherwise convert each through msgspec on every request (and cannot convert
# Settings, whose network union msgspec does not support).
SettingsDep = NamedDependency[SkipValidation[Settings]]
PoolDep = NamedDependency[SkipValidation[asyncpg.Pool]]
RelayDep = NamedDependency[SkipValidation[OutboxRelay]]
JobsDep = NamedDependency[SkipValidation[JobsService]]
JobChangesDep = NamedDependency[SkipValidation[JobChanges]]


def app_state(settings: Settings) -> State:
    """The state an app starts with; the lifespan adds `pool` and `relay`."""
    return State({"settings": settings, "api_keys": ApiKeys(settings.api_keys)})


def provide_settings(state: State) -> Settings:
    settings: Settings = state.settings
    return settings


def provide_api_keys(state: State) -> ApiKeys:
    keys: ApiKeys = state.api_keys
    return keys


def provide_pool(state: State) -> asyncpg.Pool:
    pool: asyncpg.Pool = state.pool
    return pool


def provide_relay(state: State) -> OutboxRelay:
    relay: OutboxRelay = state.relay
    return relay


def provide_jobs(pool: PoolDep, settings: SettingsDep) -> JobsService:
    return JobsService(pool, settings.storage_dir)


def provide_job_changes(state: State) -> JobChanges:
    changes: JobChanges = state.job_changes
    return changes


#: App-wide dependencies. All are cheap, non-blocking look-ups: no thread needed.
DEPENDENCIES = {
    "settings": Provide(provide_settings, sync_to_thread=False),
    "api_keys": Provide(provide_api_keys, sync_to_thread=False),
    "pool": Provide(provide_pool, sync_to_thread=False),
    "relay": Provide(provide_relay, sync_to_thread=False),
    "jobs": Provide(provide_jobs, sync_to_thread=False),
    "job_changes": Provide(provide_job_changes, sync_to_thread=False),
}
