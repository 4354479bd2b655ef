"""Data stack: the stateful resources, their protection and their stable logical IDs."""

from aws_cdk.assertions import Match

# Renaming any of these would make CloudFormation replace (and orphan) the stateful resource.
PINNED_LOGICAL_IDS = {
    "AWS::KMS::Key": ["StoreProjectKeyFD4392AA"],
    "AWS::S3::Bucket": ["StoreAccessLogBucket4E93B984", "StoreDataBucket005297F7"],
}


def test_stateful_logical_ids_are_pinned(default_app):
    template = default_app.template(default_app.stacks.data)
    for resource_type, logical_ids in PINNED_LOGICAL_IDS.items():
        found = sorted(template.find_resources(resource_type))
        assert found == logical_ids, f"{resource_type} logical IDs changed: {found}"


def test_stateful_resources_are_retained(default_app):
    template = default_app.template(default_app.stacks.data)
    for resource_type in PINNED_LOGICAL_IDS:
        for logical_id, resource in template.find_resources(resource_type).items():
            assert resource.get("DeletionPolicy") == "Retain", logical_id
            assert resource.get("UpdateReplacePolicy") == "Retain", logical_id


def test_stack_has_termination_protection(default_app):
    assert default_app.stacks.data.termination_protection is True


def test_project_key_rotates(default_app):
    default_app.template(default_app.stacks.data).has_resource_properties(
        "AWS::KMS::Key", {"EnableKeyRotation": True}
    )


def test_project_key_lets_cloudwatch_logs_encrypt_only_log_groups(default_app):
    default_app.template(default_app.stacks.data).has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Principal": {
                                    "Service": {
                                        "Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]
                                    }
                                },
                                "Condition": {
                                    "ArnLike": {"kms:EncryptionContext:aws:logs:arn": Match.any_value()}
                                },
                            }
                        )
                    ]
                )
            }
        },
    )


def test_data_bucket_is_private_versioned_kms_encrypted_and_logged(default_app):
    default_app.template(default_app.stacks.data).has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {
                        "BucketKeyEnabled": True,
                        "ServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": {"Fn::GetAtt": ["StoreProjectKeyFD4392AA", "Arn"]},
                        },
                    }
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "LoggingConfiguration": {
                "DestinationBucketName": {"Ref": "StoreAccessLogBucket4E93B984"},
                "LogFilePrefix": "data-bucket/",
            },
            "LifecycleConfiguration": {
                "Rules": [
                    Match.object_like(
                        {
                            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                            "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                            "Status": "Enabled",
                        }
                    )
                ]
            },
        },
    )


def test_both_buckets_deny_requests_without_tls(default_app):
    policies = default_app.template(default_app.stacks.data).find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 2
    for logical_id, policy in policies.items():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        ), f"{logical_id} does not deny plain HTTP"


def test_access_log_bucket_expires_logs(default_app):
    default_app.template(default_app.stacks.data).has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "LifecycleConfiguration": {"Rules": [Match.object_like({"ExpirationInDays": 365})]},
        },
    )


def test_data_bucket_sends_object_events_to_eventbridge(default_app):
    template = default_app.template(default_app.stacks.data)
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {"NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}},
    )
    template.resource_count_is("AWS::Lambda::Function", 0)
