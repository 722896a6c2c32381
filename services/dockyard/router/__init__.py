"""The router: drives Caddy so each app's host routes to its live release, switching atomically."""
