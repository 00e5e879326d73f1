"""Webhooks: signed HTTP notifications of pipeline events to each account's endpoints, at least once."""
