"""Shared by the simulator and the trainer: schemas, curriculum, scoring, the HTTP client, the CLI."""
