"""What every stage shares: configuration, the stage context, the failure policy, the
generic job-state transitions, database access, middleware, metrics, events, errors."""
