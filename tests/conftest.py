"""Shared fixtures: the app synthesized once per configuration, from cdk.json's own context."""

import copy
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")

import aws_cdk as cdk  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

import app as cdk_app  # noqa: E402
from project_config import CONTEXT_KEY, load_config  # noqa: E402

# The entrypoint's tests need LLaMA-Factory and torch: they run in their own venv (`make test-image`).
collect_ignore = ["training_image"]

CDK_JSON_CONTEXT = json.loads((ROOT / "cdk.json").read_text())["context"]

# Every optional stack switched on, so the gates (nag, cfn-lint, snapshots) cover all of them.
FULL_TEST_CONFIG: dict = {
    "hyperpod": {"enabled": True},
    "inference": {"base_model": "models/base-model/", "enabled": True},
    "notebook": {"enabled": True},
    # The pipeline's optional parts: a gated-model token secret and an e-mail subscription.
    "training": {"hf_token_secret_name": "llmft/hf-token", "notification_email": "ml-team@example.com"},
}


@dataclass
class SynthesizedApp:
    stacks: cdk_app.Stacks
    out_dir: Path
    assembly: cdk.cx_api.CloudAssembly

    def template(self, stack: cdk.Stack) -> Template:
        return Template.from_stack(stack)

    def template_files(self) -> list[Path]:
        return sorted(self.out_dir.glob("*.template.json"))


def project_context(overrides: dict | None = None) -> dict:
    """cdk.json's llmft object with `overrides` merged in, section by section."""
    merged = copy.deepcopy(CDK_JSON_CONTEXT[CONTEXT_KEY])
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def synthesize(out_dir: Path, overrides: dict | None = None) -> SynthesizedApp:
    context = {**CDK_JSON_CONTEXT, CONTEXT_KEY: project_context(overrides)}
    app = cdk.App(context=context, outdir=str(out_dir), analytics_reporting=False)
    stacks = cdk_app.build(app, load_config(context[CONTEXT_KEY]))
    return SynthesizedApp(stacks=stacks, out_dir=out_dir, assembly=app.synth())


@pytest.fixture(scope="session")
def default_app(tmp_path_factory) -> SynthesizedApp:
    """The app exactly as cdk.json configures it."""
    return synthesize(tmp_path_factory.mktemp("cdk-default"))


@pytest.fixture(scope="session")
def full_app(tmp_path_factory) -> SynthesizedApp:
    """The app with every optional stack enabled."""
    return synthesize(tmp_path_factory.mktemp("cdk-full"), FULL_TEST_CONFIG)
