"""The benchmark service: HTTP API, job queue and dashboard (``cnnbench serve``)."""
