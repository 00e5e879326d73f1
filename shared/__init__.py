"""Common code of the contentline services: settings, message contracts, topics, DB, AI client."""
