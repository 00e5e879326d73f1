"""Stage 2: clusters → content ideas with briefs and outlines."""
