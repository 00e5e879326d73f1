"""The web dashboard: server-rendered pages (Jinja2, autoescaped) with htmx for partial updates and a
server push stream fed by the run events. Served by the orchestrator under /dashboard."""
