"""Notifier: delivers chosen events to per-app webhooks and Slack-compatible chat sinks."""
