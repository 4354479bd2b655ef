"""Every stateful resource of the app: retained on delete, with a logical ID that never moves.

A changed logical ID makes CloudFormation create a new resource and orphan (or delete) the old one:
a new key, an empty bucket, repository or file system. Renaming one must fail here first.
"""

STATEFUL_TYPES = {"AWS::KMS::Key", "AWS::S3::Bucket", "AWS::ECR::Repository", "AWS::FSx::FileSystem"}

PINNED = {
    "LlmFt-Data": {
        "StoreProjectKeyFD4392AA",
        "StoreAccessLogBucket4E93B984",
        "StoreDataBucket005297F7",
    },
    "LlmFt-TrainingImage": {"ImageRepositoryD8036990"},
    "LlmFt-HyperPod": {"HyperPodFileSystem1ACE40AD"},
}


def stateful_resources(synthesized) -> dict[str, dict[str, dict]]:
    found = {}
    for stack in synthesized.stacks.all():
        resources = synthesized.template(stack).to_json()["Resources"]
        stateful = {lid: r for lid, r in resources.items() if r["Type"] in STATEFUL_TYPES}
        if stateful:
            found[stack.stack_name] = stateful
    return found


def test_stateful_logical_ids_are_pinned_across_all_stacks(full_app):
    found = {stack: set(resources) for stack, resources in stateful_resources(full_app).items()}
    assert found == PINNED, f"stateful logical IDs changed or were added: {found}"


def test_stateful_resources_are_retained_when_their_stack_is_deleted(full_app):
    for stack, resources in stateful_resources(full_app).items():
        for logical_id, resource in resources.items():
            assert resource.get("DeletionPolicy") == "Retain", f"{stack} {logical_id}"
            assert resource.get("UpdateReplacePolicy") == "Retain", f"{stack} {logical_id}"
