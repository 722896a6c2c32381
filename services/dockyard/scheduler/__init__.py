"""The scheduler: starts the new release beside the old, removes it on failure, retires the old."""
