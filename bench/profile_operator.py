"""`kdag-operator` under yappi (every thread, CPU clock), for `python -m bench --profile`.

    python -m bench.profile_operator OUT.pstat -- --namespace=ns --metrics-port=...

The planner and the API calls run in worker threads, which cProfile would not see; yappi
profiles them all. On exit (SIGTERM lets kopf shut down cleanly) it writes OUT.pstat (open
with `python -m pstats`) and OUT.txt, the functions by own and cumulative CPU time.
yappi is a dev dependency (`make venv` installs it), not a runtime one.
"""

from __future__ import annotations

import io
import pstats
import sys
from pathlib import Path

# Optional (see above); untyped, and absent unless installed for profiling.
import yappi  # type: ignore[import-untyped,import-not-found,unused-ignore]

from kdag.operator.main import main as operator_main


def main(argv: list[str]) -> int:
    out, rest = Path(argv[0]), argv[argv.index("--") + 1 :]
    yappi.set_clock_type("cpu")
    yappi.start(builtins=False, profile_threads=True)
    try:
        return operator_main(rest)
    finally:
        yappi.stop()
        yappi.get_func_stats().save(str(out), type="pstat")
        text = io.StringIO()
        for order in ("tottime", "cumulative"):
            stats = pstats.Stats(str(out), stream=text)
            stats.sort_stats(order).print_stats(45)
        threads = io.StringIO()
        yappi.get_thread_stats().print_all(out=threads)
        out.with_suffix(".txt").write_text(threads.getvalue() + text.getvalue())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
