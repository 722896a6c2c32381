"""The `api` service: HTTP API over the deployment records it projects from every event."""
