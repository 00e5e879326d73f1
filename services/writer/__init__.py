"""Stages 3 and 4: ideas → writer tasks (local) and tasks → article drafts (section by section)."""
