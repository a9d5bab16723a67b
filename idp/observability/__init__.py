"""What operators see: structured logs with a request id, and Prometheus metrics."""
