"""Turns cdk-nag's per-stack JSON reports, of every rule pack, into one Markdown summary for reviewers.

Usage: python tools/nag_summary.py cdk.out   (writes cdk.out/nag-summary.md; exit 1 on any open finding)
"""

import json
import sys
from collections import Counter
from pathlib import Path

# cdk-nag names each report `<pack>-<stack>-NagReport.json`; pack names have no dash.
REPORT_GLOB = "*-NagReport.json"
AWS_SOLUTIONS = "AwsSolutions"
SUPPRESSED = "Suppressed"
OPEN = ("Non-Compliant", "UNKNOWN")


def load_packs(out_dir: Path) -> dict[str, dict[str, list[dict]]]:
    """Pack -> stack name -> report lines, from cdk-nag's JSON reports."""
    packs: dict[str, dict[str, list[dict]]] = {}
    for path in sorted(out_dir.glob(REPORT_GLOB)):
        pack, _, rest = path.name.partition("-")
        stack = rest.removesuffix("-NagReport.json").lstrip("-")
        packs.setdefault(pack, {})[stack] = json.loads(path.read_text())["lines"]
    return packs


def load_reports(out_dir: Path, pack: str = AWS_SOLUTIONS) -> dict[str, list[dict]]:
    """Stack name -> report lines of one pack."""
    return load_packs(out_dir).get(pack, {})


def open_findings(reports: dict[str, list[dict]]) -> list[tuple[str, dict]]:
    return [(stack, line) for stack, lines in reports.items() for line in lines if line["compliance"] in OPEN]


def render_pack(pack: str, reports: dict[str, list[dict]]) -> list[str]:
    by_rule = Counter(
        line["ruleId"] for lines in reports.values() for line in lines if line["compliance"] == SUPPRESSED
    )
    found = open_findings(reports)
    out = [f"# {pack}", ""]
    out.append(
        f"Stacks checked: {len(reports)}. Open findings: {len(found)}. Suppressions: {sum(by_rule.values())}."
    )
    out += ["", "## Suppressions by rule", "", "| rule | count |", "| --- | --- |"]
    out += [f"| {rule} | {count} |" for rule, count in sorted(by_rule.items())] or ["| (none) | 0 |"]
    if found:
        out += [
            "",
            "## Open findings",
            "",
            "| stack | rule | resource | level | what |",
            "| --- | --- | --- | --- | --- |",
        ]
        out += [
            f"| {s} | {f['ruleId']} | {f['resourceId']} | {f['ruleLevel']} | {f['ruleInfo']} |"
            for s, f in found
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
    return out


def render(packs: dict[str, dict[str, list[dict]]]) -> str:
    out = ["# cdk-nag report", ""]
    out += [f"- {pack}: {len(open_findings(reports))} open findings" for pack, reports in packs.items()]
    for pack, reports in packs.items():
        out += ["", *render_pack(pack, reports)]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1] if len(argv) > 1 else "cdk.out")
    packs = load_packs(out_dir)
    if not packs:
        print(f"no cdk-nag reports ({REPORT_GLOB}) in {out_dir}: was the app synthesized?", file=sys.stderr)
        return 1
    summary = out_dir / "nag-summary.md"
    summary.write_text(render(packs))
    counts = {pack: len(open_findings(reports)) for pack, reports in packs.items()}
    stacks = len(next(iter(packs.values())))
    print(
        f"cdk-nag: {stacks} stacks, "
        + ", ".join(f"{pack} {count} open" for pack, count in counts.items())
        + f"; summary in {summary}"
    )
    return 1 if any(counts.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
