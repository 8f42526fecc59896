"""Request ids, structured logs and Prometheus metrics: how the service explains itself."""
