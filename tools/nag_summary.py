"""Turns cdk-nag's per-stack JSON reports into one Markdown summary for security reviewers.

Usage: python tools/nag_summary.py cdk.out   (writes cdk.out/nag-summary.md; exit 1 on any open finding)
"""

import json
import sys
from collections import Counter
from pathlib import Path

REPORT_GLOB = "AwsSolutions-*-NagReport.json"
SUPPRESSED = "Suppressed"
OPEN = ("Non-Compliant", "UNKNOWN")


def load_reports(out_dir: Path) -> dict[str, list[dict]]:
    """Stack name -> report lines, from cdk-nag's JSON reports."""
    reports = {}
    for path in sorted(out_dir.glob(REPORT_GLOB)):
        stack = path.name.removeprefix("AwsSolutions-").removesuffix("-NagReport.json").lstrip("-")
        reports[stack] = json.loads(path.read_text())["lines"]
    return reports


def render(reports: dict[str, list[dict]]) -> str:
    by_rule = Counter(
        line["ruleId"] for lines in reports.values() for line in lines if line["compliance"] == SUPPRESSED
    )
    open_findings = [
        (stack, line) for stack, lines in reports.items() for line in lines if line["compliance"] in OPEN
    ]
    out = ["# cdk-nag AwsSolutions report", ""]
    out.append(
        f"Stacks checked: {len(reports)}. Open findings: {len(open_findings)}. "
        f"Suppressions: {sum(by_rule.values())}."
    )
    out += ["", "## Suppressions by rule", "", "| rule | count |", "| --- | --- |"]
    out += [f"| {rule} | {count} |" for rule, count in sorted(by_rule.items())] or ["| (none) | 0 |"]
    if open_findings:
        out += [
            "",
            "## Open findings",
            "",
            "| stack | rule | resource | level | what |",
            "| --- | --- | --- | --- | --- |",
        ]
        out += [
            f"| {s} | {f['ruleId']} | {f['resourceId']} | {f['ruleLevel']} | {f['ruleInfo']} |"
            for s, f in open_findings
        ]
    for stack, lines in reports.items():
        checked = Counter(line["compliance"] for line in lines)
        out += ["", f"## {stack}", "", ", ".join(f"{k}: {v}" for k, v in sorted(checked.items())), ""]
        suppressed = [line for line in lines if line["compliance"] == SUPPRESSED]
        if suppressed:
            out += ["| rule | resource | reason |", "| --- | --- | --- |"]
            out += [f"| {f['ruleId']} | {f['resourceId']} | {f['exceptionReason']} |" for f in suppressed]
        else:
            out.append("No suppressions.")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1] if len(argv) > 1 else "cdk.out")
    reports = load_reports(out_dir)
    if not reports:
        print(f"no cdk-nag reports ({REPORT_GLOB}) in {out_dir}: was the app synthesized?", file=sys.stderr)
        return 1
    summary = out_dir / "nag-summary.md"
    summary.write_text(render(reports))
    open_count = sum(line["compliance"] in OPEN for lines in reports.values() for line in lines)
    print(f"cdk-nag: {len(reports)} stacks, {open_count} open findings; summary in {summary}")
    return 1 if open_count else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
