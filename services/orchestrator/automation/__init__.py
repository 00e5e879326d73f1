"""Automation API (issue 15): a site's rules and their scheduled-task history (services.rules), and an account's
webhook endpoints with their delivery logs (services.webhooks). The logic lives in those services; these routers
only authenticate, scope to the caller's account and translate errors."""
