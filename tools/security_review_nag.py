"""Every cdk-nag pack's findings and suppressions, from the per-stack JSON reports
(`<Pack>-<Stack>-NagReport.json`)."""

import re
from collections import Counter
from dataclasses import dataclass

from tools.nag_summary import OPEN, REPORT_GLOB, SUPPRESSED
from tools.security_review_md import code, plain, table

# cdk-nag writes a suppression scoped with applies_to as "[<finding>] <reason>".
GRANULAR = re.compile(r"^\[(?P<finding>[^\]]+)\] (?P<reason>.*)$", re.DOTALL)


@dataclass
class Suppression:
    pack: str
    stack: str
    resource: str
    rule: str
    applies_to: str
    reason: str


def suppressions(reports: dict[str, dict[str, list[dict]]]) -> list[Suppression]:
    out = []
    for pack, stacks in reports.items():
        for stack, lines in stacks.items():
            for line in lines:
                if line["compliance"] != SUPPRESSED:
                    continue
                reason = line["exceptionReason"]
                match = GRANULAR.match(reason)
                applies_to, reason = (match["finding"], match["reason"]) if match else ("", reason)
                out.append(Suppression(pack, stack, line["resourceId"], line["ruleId"], applies_to, reason))
    return out


def open_findings(reports: dict[str, dict[str, list[dict]]]) -> list[tuple[str, str, dict]]:
    return [
        (pack, stack, line)
        for pack, stacks in reports.items()
        for stack, lines in stacks.items()
        for line in lines
        if line["compliance"] in OPEN
    ]


def counts(lines: list[dict]) -> dict[str, Counter]:
    """Rule -> status -> count."""
    out: dict[str, Counter] = {}
    for line in lines:
        out.setdefault(line["ruleId"], Counter())[line["compliance"]] += 1
    return out


def section(reports: dict[str, dict[str, list[dict]]], order: list[str]) -> list[str]:
    """The nag section; stacks in `order` (deployment order), then any other stack by name."""
    rank = {stack: index for index, stack in enumerate(order)}

    def ordered(stacks) -> list[str]:
        return sorted(stacks, key=lambda s: (rank.get(s, len(rank)), s))

    every = suppressions(reports)
    found = open_findings(reports)
    out = [
        "## cdk-nag findings and suppressions",
        "",
        f"From every `{REPORT_GLOB}` that cdk-nag wrote beside the templates: one report per pack and stack, "
        "one line per rule and resource checked. A suppression scoped to one finding (`applies_to`) shows "
        "the finding it covers.",
        "",
    ]
    if not reports:
        return out + ["No cdk-nag report was found.", ""]
    rows = []
    for pack, stacks in sorted(reports.items()):
        for stack in ordered(stacks):
            lines = stacks[stack]
            status = Counter(line["compliance"] for line in lines)
            rows.append([pack, stack, len(lines), ", ".join(f"{k}: {v}" for k, v in sorted(status.items()))])
    out += table(["pack", "stack", "checks", "by status"], rows)
    out += ["", f"Open findings: {len(found)}. Suppressions: {len(every)}.", ""]
    for pack, stacks in sorted(reports.items()):
        names = ordered(stacks)
        out += [f"### {pack}: checks by rule and stack", ""]
        by_stack = {stack: counts(lines) for stack, lines in stacks.items()}
        rules = sorted({rule for c in by_stack.values() for rule in c})
        out += table(
            ["rule", *names],
            [
                [rule]
                + [
                    ", ".join(f"{v} {k}" for k, v in sorted(by_stack[s].get(rule, Counter()).items()))
                    for s in names
                ]
                for rule in rules
            ],
        )
        pack_open = sorted(((s, line) for p, s, line in found if p == pack), key=lambda f: names.index(f[0]))
        out += ["", f"### {pack}: open findings ({len(pack_open)})", ""]
        out += table(
            ["stack", "rule", "resource", "level", "what"],
            [
                [s, f["ruleId"], code(f["resourceId"]), f["ruleLevel"], plain(f["ruleInfo"])]
                for s, f in pack_open
            ],
        )
        pack_suppressions = sorted((s for s in every if s.pack == pack), key=lambda s: names.index(s.stack))
        out += ["", f"### {pack}: suppressions ({len(pack_suppressions)})", ""]
        out += table(
            ["stack", "resource", "rule", "applies to", "reason"],
            [
                [
                    s.stack,
                    code(s.resource),
                    s.rule,
                    code(s.applies_to) if s.applies_to else "(whole rule)",
                    plain(s.reason),
                ]
                for s in pack_suppressions
            ],
        )
        out.append("")
    return out
