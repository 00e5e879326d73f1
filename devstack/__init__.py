"""Local development stack helpers (Kafka launcher and friends)."""
