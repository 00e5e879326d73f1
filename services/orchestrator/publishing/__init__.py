"""Publishing (issue 14, the orchestrator's side): per-site publishing settings, auto-approval's switch, the
publishing schedule and its ticker, WordPress connections, and the publisher's results on the drafts."""
