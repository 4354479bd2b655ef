"""Gates over every synthesized stack: cdk-nag findings and reports, cfn-lint."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Annotations, Match

from app import NAG_PACKS
from tools import nag_summary

ROOT = Path(__file__).resolve().parent.parent

NAG_MESSAGE = Match.string_like_regexp(
    r"(AwsSolutions-|HIPAA\.Security-|NIST\.800\.53\.R5-|PCI\.DSS\.321-|CdkNagValidationFailure)"
)
# The report name of each pack app.py runs (cdk-nag's `readPackName`).
PACK_NAMES = ["AwsSolutions", "HIPAA.Security", "NIST.800.53.R5", "PCI.DSS.321"]


@pytest.fixture(params=["default_app", "full_app"])
def synthesized(request):
    return request.getfixturevalue(request.param)


def test_no_unsuppressed_nag_finding(synthesized):
    for stack in synthesized.stacks.all():
        annotations = Annotations.from_stack(stack)
        findings = annotations.find_error("*", NAG_MESSAGE) + annotations.find_warning("*", NAG_MESSAGE)
        assert not findings, f"{stack.stack_name}: " + "\n".join(str(f.entry.data) for f in findings)


def test_every_stack_has_a_report_of_every_pack_and_every_suppression_a_reason(synthesized):
    assert len(NAG_PACKS) == len(PACK_NAMES)
    packs = nag_summary.load_packs(synthesized.out_dir)
    assert sorted(packs) == sorted(PACK_NAMES)
    for pack, reports in packs.items():
        assert sorted(reports) == sorted(stack.stack_name for stack in synthesized.stacks.all()), pack
        for stack, lines in reports.items():
            assert lines, f"{stack}: the {pack} pack checked nothing"
            for line in lines:
                assert line["compliance"] not in nag_summary.OPEN, f"{pack} {stack}: {line}"
                if line["compliance"] == nag_summary.SUPPRESSED:
                    assert len(line["exceptionReason"]) >= 30, f"{stack} {line['ruleId']}: reason too thin"


def test_no_two_suppressions_of_a_pack_share_a_reason(synthesized):
    """Each reason says what its resource does and why the rule does not fit there: no boilerplate."""
    for pack, reports in nag_summary.load_packs(synthesized.out_dir).items():
        seen: dict[str, tuple[str, str]] = {}
        for stack, lines in reports.items():
            for line in lines:
                if line["compliance"] != nag_summary.SUPPRESSED:
                    continue
                where = (line["ruleId"], f"{stack} {line['resourceId']}")
                first = seen.setdefault(line["exceptionReason"], where)
                assert first == where, f"{pack}: {where} and {first} share {line['exceptionReason']!r}"


def test_summary_lists_suppressions_and_passes_clean_reports(synthesized):
    assert nag_summary.main(["nag_summary", str(synthesized.out_dir)]) == 0
    summary = (synthesized.out_dir / "nag-summary.md").read_text()
    for pack in PACK_NAMES:
        assert f"- {pack}: 0 open findings" in summary
    for stack in synthesized.stacks.all():
        assert f"## {stack.stack_name}" in summary


def test_summary_fails_on_an_open_finding(tmp_path):
    finding = {
        "ruleId": "AwsSolutions-S1",
        "resourceId": "Demo/Bucket/Resource",
        "compliance": "Non-Compliant",
        "exceptionReason": "N/A",
        "ruleLevel": "Error",
        "ruleInfo": "The S3 Bucket has server access logs disabled.",
    }
    (tmp_path / "AwsSolutions-Demo-NagReport.json").write_text(json.dumps({"lines": [finding]}))
    assert nag_summary.main(["nag_summary", str(tmp_path)]) == 1
    assert "| Demo | AwsSolutions-S1 | Demo/Bucket/Resource |" in (tmp_path / "nag-summary.md").read_text()


def test_cfn_lint_reports_nothing_on_any_template(synthesized):
    templates = synthesized.template_files()
    assert len(templates) == len(synthesized.stacks.all())
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--config-file",
            ".cfnlintrc.yaml",
            "--",
            *map(str, templates),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# cdk-nag rules that report one finding per action/resource/policy: a suppression must name which.
GRANULAR_RULES = {"AwsSolutions-IAM4", "AwsSolutions-IAM5"}


def test_granular_suppressions_name_the_findings_they_cover(synthesized):
    """A granular suppression without applies_to silences every finding of the rule on the resource.

    (A plain dict written with the Python spelling `applies_to` loses that key on its way to cdk-nag.)
    """
    for path in synthesized.template_files():
        resources = json.loads(path.read_text()).get("Resources", {})
        for logical_id, resource in resources.items():
            suppressions = resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
            for suppression in suppressions:
                if suppression["id"] in GRANULAR_RULES:
                    assert suppression.get("applies_to"), (
                        f"{path.name} {logical_id}: {suppression['id']} suppressed for every finding"
                    )
