"""The planner's rules, one module per SPEC §3 rule family.

Each module changes a `PassState` through its phase helpers; one with a deadline exports
`due`/`node_due`, the time it wants the run planned again, so the requeue time is the
minimum of the rules' dues. `kdag.engine.planner` calls them in order, one pass at a time.
"""
