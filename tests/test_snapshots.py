"""Snapshots of every stack's template: any drift shows up as a reviewed diff."""

import json
import re

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

# Asset hashes change with file contents and packaging details (zip metadata, the CDK release that
# bundles a handler); the template's own shape is what the snapshot guards.
ASSET_HASH = re.compile(r"[0-9a-f]{64}")


def normalized(template: dict) -> dict:
    return json.loads(ASSET_HASH.sub("<asset-hash>", json.dumps(template, sort_keys=True)))


@pytest.fixture
def snapshot_json(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize("config_name", ["default_app", "full_app"])
def test_stack_templates_match_their_snapshots(request, config_name, snapshot_json):
    synthesized = request.getfixturevalue(config_name)
    for stack in synthesized.stacks.all():
        template = synthesized.template(stack).to_json()
        assert normalized(template) == snapshot_json(name=f"{config_name}-{stack.stack_name}")
