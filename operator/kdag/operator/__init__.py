"""The imperative shell of kdag: kopf handlers and the Kubernetes I/O around the pure planner.

Watches feed an in-memory cache (`cache`), a per-run work queue (`reconciler`) calls
`kdag.engine.planner.plan` and applies its actions through `kube`; `metrics` and `events`
report what happened. `main` is the `kdag-operator` console script.
"""
