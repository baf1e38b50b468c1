"""The summary line (and JSON artifact) of a schemathesis fuzz module: how many cases ran, and what came back."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def write_fuzz_summary(request, *, label: str, artifact: str, cases: Counter, operations: int, statuses: Counter,
                       max_examples: int) -> None:
    if not cases:
        return
    summary = {"cases": sum(cases.values()), "operations": operations, "max_examples": max_examples,
               "statuses": dict(sorted(statuses.items())), "per_operation": dict(sorted(cases.items()))}
    if ARTIFACTS.is_dir():
        worker = os.environ.get("PYTEST_XDIST_WORKER")  # under xdist each worker fuzzes its share
        (ARTIFACTS / (f"{artifact}-{worker}.json" if worker else f"{artifact}.json")).write_text(json.dumps(summary, indent=2))
    line = f"{label}: {summary['cases']} cases over {summary['operations']} operations; statuses {summary['statuses']}"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line(line)
    else:  # pragma: no cover
        print(line)
