"""What every process exposes about itself: Prometheus metrics, OpenTelemetry traces, structured
logs and a health endpoint that can fail (docs/observability.md)."""
