"""Rules: a site's automation rules (IGNY8 seed 003) on entity events and cron schedules, executed through the
run engine as targeted runs, each execution a scheduled-task row."""
