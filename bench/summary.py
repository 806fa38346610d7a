"""`python -m bench summary`: the one-screen table at the top of BENCHMARKS.md, each figure that
has a goal at its newest record, whether it meets the goal, and when and where it was measured.
Rewritten between the markers; the history below it is left as it is."""

from __future__ import annotations

import json
import re

from bench.record import REPO, RESULTS

BENCHMARKS_MD = REPO / "BENCHMARKS.md"
START, END = "<!-- summary:start -->", "<!-- summary:end -->"
# A goal the table can check: an optional comparison and a number ("< 300", ">= 0.9", "0 ...").
CHECKABLE = re.compile(r"^\s*(<=|>=|<|>|=|~)?\s*(-?\d+(?:\.\d+)?)\b")


# Goals that open issues set and no run has measured yet (the GPU ones wait for a GPU machine).
PENDING = {
    "isbi_gpu_rand": ("<= 0.030", "bash bench/isbi-gpu.sh OUT (GPU)"),
    "isbi_gpu_warping": ("<= 0.00035", "bash bench/isbi-gpu.sh OUT (GPU)"),
    "isbi_gpu_minutes_to_rand_0.05": ("<= 3", "bash bench/isbi-gpu.sh OUT (GPU)"),
    "gpu_augment_vs_cpu_loader": (">= 4", "bash bench/gpu-check.sh OUT (GPU)"),
    "predict_cuda_mpx_s": (">= 200", "bash bench/gpu-check.sh OUT (GPU: bench gpu-limits)"),
    "noop_rerun_s_500_volumes": ("<= 10", "python -m bench workflow-scale"),
}


def newest_with_goals(lines: list[str]) -> dict[str, dict]:
    """The newest record of each figure whose goal is more than 'report ...'."""
    newest = {}
    for line in lines:
        if line.strip():
            row = json.loads(line)
            newest[row["name"]] = row
    return {name: row for name, row in newest.items()
            if str(row.get("goal", "")).strip() and not str(row["goal"]).startswith("report")}  # fmt: skip


def verdict(value, goal: str) -> str:
    """'yes' / 'no' where the goal is a comparison with a number, '' where it needs reading."""
    match = CHECKABLE.match(str(goal))
    if not match or not isinstance(value, int | float):
        return ""
    operator, bound = match.group(1) or "=", float(match.group(2))
    met = {
        "<": value < bound, "<=": value <= bound, ">": value > bound, ">=": value >= bound,
        "=": value == bound, "~": abs(value - bound) <= 0.1 * abs(bound),
    }[operator]  # fmt: skip
    return "yes" if met else "**no**"


def table(rows: dict[str, dict]) -> str:
    lines = [
        "| figure | newest | unit | goal | met | date, commit |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, (goal, command) in PENDING.items():
        if name not in rows:
            lines.append(f"| `{name}` | not measured | | {goal} | | `{command}` |")
    for name, row in sorted(rows.items()):
        unit = str(row.get("unit", "")).split(" (")[0][:40]
        lines.append(
            f"| `{name}` | {row['value']} | {unit} | {row['goal']} | "
            f"{verdict(row['value'], row['goal'])} | {row.get('date', '')[:10]}, "
            f"{row.get('commit', '')} |"
        )
    return "\n".join(lines)


def summarize() -> None:
    rows = newest_with_goals(RESULTS.read_text().splitlines())
    text = BENCHMARKS_MD.read_text()
    block = (
        f"{START}\n## Every figure with a goal, newest run\n\n"
        f"Made by `python -m bench summary` from `bench/results.jsonl` ({len(rows)} figures; "
        f"'met' is blank where the goal is words, e.g. flat in size, which the section below "
        f"judges). The sections after it hold each benchmark's command, history and reading.\n\n"
        f"{table(rows)}\n{END}"
    )
    if START in text:
        before, rest = text.split(START, 1)
        text = before + block + rest.split(END, 1)[1]
    else:
        title, _, body = text.partition("\n")
        text = f"{title}\n\n{block}\n{body}"
    BENCHMARKS_MD.write_text(text)
    print(f"BENCHMARKS.md: summary of {len(rows)} figures")


BENCHMARKS = {"summary": summarize}
