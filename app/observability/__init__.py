"""Metrics (Prometheus), structured logs and the request id that ties a log line to a request."""
