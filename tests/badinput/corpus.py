"""The bad-input corpus: malformed Workflows and WorkflowRuns, each with what must happen.

Every file starts with `# expect: <outcome>: <text>`:
- `admission` — the API server rejects it (schema or CEL rule); its message contains text;
- `invalid` — accepted, and the run ends `Invalid` with text in `status.message`;
- `admission-or-invalid` — either of the two (a cheap CEL rule may catch it first);
- `workflow-invalid` — a Workflow that is accepted and reports valid=false with text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).parent


@dataclass(frozen=True)
class Case:
    path: Path
    outcome: str
    text: str
    document: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.stem


def load_cases() -> list[Case]:
    cases = []
    for path in sorted(CORPUS.glob("*.yaml")):
        raw = path.read_text()
        header = raw.splitlines()[0]
        assert header.startswith("# expect: "), path
        outcome, _, text = header.removeprefix("# expect: ").partition(": ")
        cases.append(Case(path, outcome, text, yaml.safe_load(raw)))
    return cases
