"""The pure core: graph, validation, templating, conditions and the planner (no I/O)."""
