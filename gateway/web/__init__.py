"""The HTTP endpoint: Prometheus metrics, health, a JSON API, a live frame stream, a console."""
