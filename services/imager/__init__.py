"""Stages 5 and 6: drafts → image prompts, prompts → images stored as files."""
