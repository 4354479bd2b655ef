"""checkov (pinned in requirements-checkov.txt, its own venv) on every synthesized template.

With `.checkov.yaml` nothing fails; without it, the skipped checks flag exactly the resources the config
file names in its reasons, so a new finding anywhere (one of our own functions, a new policy) fails here.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CONFIG = ROOT / ".checkov.yaml"
# Every Lambda function in the all-stacks synthesis: ours, and aws-cdk-lib's handlers.
FUNCTIONS = {
    "PipelineValidator",
    "PipelineRecorder",
    "AdapterRegistrationPlanner",
    "ImageStartBuild",
    "ImageCheckBuild",
    "ImageProviderframeworkonEvent",
    "ImageProviderframeworkisComplete",
    "ImageProviderframeworkonTimeout",
    "CustomCDKBucketDeployment",
    "CustomVpcRestrictDefaultSGCustomResourceProviderHandler",
}
# (check -> resources, by logical ID without CDK's hash) that the skipped checks flag, as .checkov.yaml says.
EXPECTED = {
    "CKV_AWS_115": FUNCTIONS,
    "CKV_AWS_116": FUNCTIONS,
    "CKV_AWS_117": FUNCTIONS,
    # aws-cdk-lib's handlers only: our functions' variables are under the project key.
    "CKV_AWS_173": {
        "CustomCDKBucketDeployment",
        "ImageProviderframeworkonEvent",
        "ImageProviderframeworkisComplete",
        "ImageProviderframeworkonTimeout",
    },
    "CKV_AWS_33": {"StoreProjectKey"},
    "CKV_AWS_18": {"StoreAccessLogBucket"},
    "CKV_AWS_111": {"ImageProviderwaiterstatemachineRoleDefaultPolicy"},
    "CKV_AWS_370": {"LmiBaseModel"},
}
CDK_HASH = re.compile(r"[0-9A-F]{8,}$")


@pytest.fixture(params=["default_app", "full_app"])
def synthesized(request):
    return request.getfixturevalue(request.param)


def checkov(templates: list[Path], cwd: Path, *config: str) -> list[dict]:
    """checkov's JSON results, one per template (a list even for one)."""
    result = subprocess.run(
        [
            str(CHECKOV),
            *config,
            "--framework",
            "cloudformation",
            "--skip-download",
            "--compact",
            "--quiet",
            "-o",
            "json",
            "-f",
            *map(str, templates),
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    assert result.stdout, result.stderr[-3000:]
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def findings(reports: list[dict]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for report in reports:
        for check in report["results"]["failed_checks"]:
            logical_id = check["resource"].split(".", 1)[1]
            found.setdefault(check["check_id"], set()).add(CDK_HASH.sub("", logical_id))
    return found


def test_every_template_passes_checkov_with_the_projects_config(synthesized, tmp_path):
    reports = checkov(synthesized.template_files(), tmp_path, "--config-file", str(CONFIG))
    assert sum(report["summary"]["failed"] for report in reports) == 0, findings(reports)
    assert sum(report["summary"]["passed"] for report in reports) > 200
    assert all(report["summary"]["parsing_errors"] == 0 for report in reports)


def test_the_skipped_checks_flag_exactly_the_resources_their_reasons_name(full_app, tmp_path):
    # From a folder without .checkov.yaml, which checkov would otherwise read on its own.
    found = findings(checkov(full_app.template_files(), tmp_path))
    assert found == EXPECTED
    skipped = yaml.safe_load(CONFIG.read_text())["skip-check"]
    assert sorted(skipped) == sorted(EXPECTED), "a skip in .checkov.yaml that nothing needs, or one missing"
    reasons = CONFIG.read_text()
    for check in EXPECTED:
        assert f"# {check} (" in reasons, f"{check} has no reason in .checkov.yaml"


def test_the_default_synthesis_flags_no_other_resource(default_app, tmp_path):
    found = findings(checkov(default_app.template_files(), tmp_path))
    for check, resources in found.items():
        assert resources <= EXPECTED.get(check, set()), (check, resources)
