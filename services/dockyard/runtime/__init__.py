"""Runtimes: build, run one-off, start instance, check health, stop — process and docker."""
