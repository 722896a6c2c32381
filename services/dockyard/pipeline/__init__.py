"""Pieces the builder, hook-runner and scheduler share: lock, config, idempotency, env, phases."""
