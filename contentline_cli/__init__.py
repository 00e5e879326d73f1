"""Command-line client for the contentline orchestrator API (`contentline` / `python -m contentline_cli`)."""
