"""HTTP plumbing shared by the orchestrator's routers: problem bodies, safe input types, strict JSON,
authentication and the route-kind registry."""
