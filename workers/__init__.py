"""Background workers: Dramatiq actors, the worker processes and their supervisor, and the CLI."""
