"""Every data store with its key: buckets, keys, log groups, topics, repositories, file systems, SageMaker
volumes, secrets; and every property in the templates that names a KMS key."""

import json
import re
from dataclasses import dataclass

from tools.security_review_cfn import App, Resource, find_settings
from tools.security_review_md import cell, code, table

KEY_SETTING = re.compile(r"kms|encryptionkey", re.IGNORECASE)
SECRET_ARN = re.compile(r"arn:[^\"\s,]*?:secretsmanager:[^\"\s,]*?:secret:[^\"\s,\]]+")
# Stores the app does not build today, listed with whatever key setting they carry if one is added.
OTHER_STORES = (
    "AWS::DynamoDB::Table",
    "AWS::SQS::Queue",
    "AWS::EFS::FileSystem",
    "AWS::RDS::DBInstance",
    "AWS::RDS::DBCluster",
    "AWS::SecretsManager::Secret",
    "AWS::Kinesis::Stream",
)


@dataclass
class Store:
    stack: str
    kind: str
    name: str
    key: str
    settings: list[str]
    on_delete: str


@dataclass
class KeySetting:
    stack: str
    resource: str
    path: str
    key: str


def _on_delete(res: Resource) -> str:
    return res.body.get("DeletionPolicy", "Delete (default)")


def _policy_denies_plain_http(app: App, res: Resource, policy_type: str, link: str) -> bool:
    """Whether a policy attached to `res` denies requests with aws:SecureTransport false."""
    for policy in app.resources(policy_type):
        links = policy.props.get(link)
        if res.key not in {
            app.target(policy.stack, v) for v in (links if isinstance(links, list) else [links])
        }:
            continue
        for statement in policy.props.get("PolicyDocument", {}).get("Statement", []):
            secure = statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
            if statement.get("Effect") == "Deny" and str(secure).lower() == "false":
                return True
    return False


def _key(app: App, res: Resource, holder: dict, name: str, otherwise: str) -> str:
    return app.text(res.stack, holder[name]) if name in holder else otherwise


def _store(app: App, res: Resource, kind: str, key: str, settings: list[str], name: str = "") -> Store:
    return Store(res.stack, kind, name or app.name(res.key, res.stack), key, settings, _on_delete(res))


def _lifecycle(rule: dict) -> str:
    parts = []
    if "ExpirationInDays" in rule:
        parts.append(f"objects expire after {rule['ExpirationInDays']} days")
    if "NoncurrentVersionExpiration" in rule:
        parts.append(
            f"noncurrent versions after {rule['NoncurrentVersionExpiration']['NoncurrentDays']} days"
        )
    if "AbortIncompleteMultipartUpload" in rule:
        days = rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        parts.append(f"incomplete uploads aborted after {days} days")
    return f"lifecycle {rule.get('Id', '')} ({rule.get('Status')}): " + "; ".join(parts)


def bucket(app: App, res: Resource) -> list[Store]:
    props = res.props
    rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
    default = rules[0].get("ServerSideEncryptionByDefault", {}) if rules else {}
    algorithm = default.get("SSEAlgorithm")
    if algorithm == "AES256":
        otherwise = "AES256: S3-managed key (SSE-S3)"
    else:
        otherwise = f"{algorithm}: AWS-managed key" if algorithm else "none in template (S3 applies SSE-S3)"
    block = props.get("PublicAccessBlockConfiguration", {})
    flags = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    missing = [flag for flag in flags if block.get(flag) is not True]
    logging = props.get("LoggingConfiguration")
    bucket_key = ", bucket key on" if rules and rules[0].get("BucketKeyEnabled") else ""
    settings = [
        f"encryption {algorithm or 'default'}{bucket_key}",
        f"versioning {props.get('VersioningConfiguration', {}).get('Status', 'off')}",
        f"public access block missing: {', '.join(missing)}"
        if missing
        else "public access block: all four on",
        "TLS only (bucket policy denies aws:SecureTransport false)"
        if _policy_denies_plain_http(app, res, "AWS::S3::BucketPolicy", "Bucket")
        else "plain HTTP not denied by a bucket policy",
    ]
    if logging:
        target = app.text(res.stack, logging.get("DestinationBucketName", "(this bucket)"))
        settings.append(f"access logs to {target}/{logging.get('LogFilePrefix', '')}")
    else:
        settings.append("no access logs")
    settings += [_lifecycle(rule) for rule in props.get("LifecycleConfiguration", {}).get("Rules", [])]
    return [_store(app, res, "S3 bucket", _key(app, res, default, "KMSMasterKeyID", otherwise), settings)]


def kms_key(app: App, res: Resource) -> list[Store]:
    props = res.props
    statements = props.get("KeyPolicy", {}).get("Statement", [])
    settings = [
        f"rotation {'on' if props.get('EnableKeyRotation') else 'off'}",
        f"deletion waits {props.get('PendingWindowInDays', 30)} days",
        f"key policy of {len(statements)} statements (see Resource policies)",
    ]
    return [_store(app, res, "KMS key", "(the key itself)", settings)]


def log_group(app: App, res: Resource) -> list[Store]:
    days = res.props.get("RetentionInDays")
    key = _key(app, res, res.props, "KmsKeyId", "none: CloudWatch Logs' own encryption")
    return [_store(app, res, "Log group", key, [f"retention {days} days" if days else "never expires"])]


def function_logs(app: App, res: Resource) -> list[Store]:
    """A function without a log group of its own logs to one that Lambda creates, outside any stack."""
    if "LogGroup" in res.props.get("LoggingConfig", {}):
        return []
    name = f"default group of {app.name(res.key, res.stack)}"
    settings = ["/aws/lambda/<function name>, created by Lambda at first run, never expires"]
    return [Store(res.stack, "Log group (Lambda default)", name, "none", settings, "kept: not in a template")]


def topic(app: App, res: Resource) -> list[Store]:
    settings = [
        "TLS only (topic policy denies aws:SecureTransport false)"
        if _policy_denies_plain_http(app, res, "AWS::SNS::TopicPolicy", "Topics")
        else "plain HTTP not denied by a topic policy"
    ]
    settings += [
        f"subscription {sub.props.get('Protocol')}: {app.text(sub.stack, sub.props.get('Endpoint'))}"
        for sub in app.resources("AWS::SNS::Subscription")
        if app.target(sub.stack, sub.props.get("TopicArn")) == res.key
    ]
    key = _key(app, res, res.props, "KmsMasterKeyId", "none: not encrypted at rest")
    return [_store(app, res, "SNS topic", key, settings)]


def repository(app: App, res: Resource) -> list[Store]:
    props = res.props
    encryption = props.get("EncryptionConfiguration", {})
    otherwise = f"{encryption.get('EncryptionType', 'AES256')}: ECR-managed key"
    scan = props.get("ImageScanningConfiguration", {}).get("ScanOnPush")
    settings = [
        f"scan on push {'on' if scan else 'off'}",
        f"tags {props.get('ImageTagMutability', 'MUTABLE')}",
        "lifecycle policy set" if "LifecyclePolicy" in props else "no lifecycle policy: images kept forever",
    ]
    return [_store(app, res, "ECR repository", _key(app, res, encryption, "KmsKey", otherwise), settings)]


def file_system(app: App, res: Resource) -> list[Store]:
    props = res.props
    lustre = props.get("LustreConfiguration", {})
    settings = [f"{props.get('FileSystemType')} {lustre.get('DeploymentType', '')}".strip()]
    for link in app.resources("AWS::FSx::DataRepositoryAssociation"):
        if app.target(link.stack, link.props.get("FileSystemId")) == res.key:
            source = app.text(link.stack, link.props.get("DataRepositoryPath"))
            settings.append(f"linked to {source} at {link.props.get('FileSystemPath')}")
    key = _key(app, res, props, "KmsKeyId", "none in template: FSx-managed key")
    return [_store(app, res, "FSx file system", key, settings)]


def notebook(app: App, res: Resource) -> list[Store]:
    props = res.props
    settings = [
        f"{props.get('VolumeSizeInGB', 5)} GB ML storage volume",
        f"root access {props.get('RootAccess', 'Enabled')}",
        f"direct internet access {props.get('DirectInternetAccess', 'Enabled')}",
    ]
    key = _key(app, res, props, "KmsKeyId", "none in template: AWS-managed key")
    return [_store(app, res, "Notebook volume", key, settings)]


def endpoint_config(app: App, res: Resource) -> list[Store]:
    variants = [
        f"{v.get('VariantName')}: {v.get('InstanceType')}" for v in res.props.get("ProductionVariants", [])
    ]
    otherwise = "not set: an AWS-managed key (types with instance storage accept none)"
    return [_store(app, res, "Endpoint volumes", _key(app, res, res.props, "KmsKeyId", otherwise), variants)]


def cluster(app: App, res: Resource) -> list[Store]:
    out = []
    for group in res.props.get("InstanceGroups", []):
        for storage in group.get("InstanceStorageConfigs", []):
            if "EbsVolumeConfig" in storage:
                ebs = storage["EbsVolumeConfig"]
                count, kind = group.get("InstanceCount"), group.get("InstanceType")
                size = f"{count} x {kind}, {ebs.get('VolumeSizeInGB')} GB"
                name = f"{app.name(res.key, res.stack)} group {group.get('InstanceGroupName')}"
                key = _key(app, res, ebs, "VolumeKmsKeyId", "not set: AWS-managed key")
                out.append(_store(app, res, "Cluster volumes", key, [size], name))
    return out


def other_store(app: App, res: Resource) -> list[Store]:
    found = find_settings(res.props, KEY_SETTING)
    key = ", ".join(app.text(res.stack, value) for _, value in found) or "none in template"
    return [_store(app, res, res.type.removeprefix("AWS::"), key, [])]


READERS = {
    "AWS::S3::Bucket": bucket,
    "AWS::KMS::Key": kms_key,
    "AWS::Logs::LogGroup": log_group,
    "AWS::Lambda::Function": function_logs,
    "AWS::SNS::Topic": topic,
    "AWS::ECR::Repository": repository,
    "AWS::FSx::FileSystem": file_system,
    "AWS::SageMaker::NotebookInstance": notebook,
    "AWS::SageMaker::EndpointConfig": endpoint_config,
    "AWS::SageMaker::Cluster": cluster,
    **dict.fromkeys(OTHER_STORES, other_store),
}


def stores(app: App) -> list[Store]:
    """One row per data store, with the key that encrypts it and what protects it."""
    return [row for kind, read in READERS.items() for res in app.resources(kind) for row in read(app, res)]


def key_settings(app: App) -> list[KeySetting]:
    """Every property of every resource (state machine definitions included) that names a KMS key."""
    return [
        KeySetting(
            res.stack,
            f"{res.type.removeprefix('AWS::')} {app.name(res.key, res.stack)}",
            path,
            app.text(res.stack, value),
        )
        for res in app.resources()
        for path, value in find_settings(app.expanded(res), KEY_SETTING)
    ]


def secrets(app: App) -> dict[str, list[str]]:
    """Secrets Manager ARN (or secret resource) -> the resources that name it."""
    found: dict[str, list[str]] = {}
    for res in app.resources():
        label = f"{res.type.removeprefix('AWS::')} {app.name(res.key, res.stack)}"
        if res.type == "AWS::SecretsManager::Secret":
            found.setdefault(f"<{app.name(res.key)}>", []).append(label + " (the secret)")
        for arn in sorted(set(SECRET_ARN.findall(json.dumps(app.render(res.stack, res.props))))):
            found.setdefault(arn, []).append(label)
    return found


def section(rows: list[Store], settings: list[KeySetting], secret_uses: dict[str, list[str]]) -> list[str]:
    out = [
        "## Data stores and their keys",
        "",
        "From buckets (and their bucket policies), KMS keys, log groups (and Lambda functions without "
        "one), SNS topics (and topic policies, subscriptions), ECR repositories, FSx file systems, "
        f"SageMaker notebook instances, endpoint configs and clusters in the templates. {len(rows)} stores.",
        "",
    ]
    out += table(
        ["stack", "kind", "store", "key", "settings", "on stack delete"],
        [[r.stack, r.kind, code(r.name), code(r.key), cell(r.settings), r.on_delete] for r in rows],
    )
    out += [
        "",
        "### Every property that names a KMS key",
        "",
        "Every property whose name contains `Kms` or `EncryptionKey`, outside policy documents: environment "
        "variables included, and a state machine's definition read with its substitutions. Keys handed to "
        "resources created at run time (a training job's volume and output keys) show here. "
        f"{len(settings)} properties.",
        "",
    ]
    out += table(
        ["stack", "resource", "property", "key"],
        [[s.stack, code(s.resource), code(s.path), code(s.key)] for s in settings],
    )
    out += ["", "### Secrets referenced", "", "Secrets Manager ARNs named anywhere in the templates.", ""]
    out += table(
        ["secret", "named by"], [[code(arn), cell(users)] for arn, users in sorted(secret_uses.items())]
    )
    out.append("")
    return out
