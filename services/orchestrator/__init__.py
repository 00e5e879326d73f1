"""The orchestrator: run state, strict stage barrier, credits, review gate, REST API."""
