"""Stage 1: keywords → clusters (embeddings + incremental centroid clustering; the model only names clusters)."""
