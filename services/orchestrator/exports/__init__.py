"""Exports for people without WordPress (issue 14): a draft, or every approved draft of a site, as a zip of
Markdown + HTML with its images and an index."""
