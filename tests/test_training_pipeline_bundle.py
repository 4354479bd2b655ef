"""The Lambda bundle the state machine's first and last Tasks run: the launcher's judge, whole and alone."""

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from constructs.llmft_training_pipeline import BUNDLED_FILES
from tests.conftest import CDK_JSON_CONTEXT, ROOT
from tests.pipeline_moto import bundle_dir
from training_pipeline.deployment import deployment_for
from training_pipeline.request import Deployment

# What the Lambda runtime itself provides besides the standard library.
RUNTIME_PACKAGES = ("boto3", "botocore", "jmespath", "dateutil", "s3transfer", "urllib3", "six")


@pytest.fixture(scope="module")
def bundle(default_app) -> Path:
    return bundle_dir(default_app, default_app.stacks.training_pipeline)


def test_the_bundle_holds_the_repositorys_own_judge_and_rules(bundle):
    for target, source in BUNDLED_FILES.items():
        sources = sorted(source.rglob("*.*")) if source.is_dir() else [source]
        for path in sources:
            bundled = bundle / target / path.relative_to(source) if source.is_dir() else bundle / target
            assert bundled.read_bytes() == path.read_bytes(), f"{bundled} differs from {path}"
    assert (bundle / "training_pipeline" / "handlers.py").is_file()
    assert not (bundle / "training_pipeline" / "deployment.py").exists(), (
        "the CDK app's config code stays out"
    )


def test_the_bundled_settings_are_the_launchers(bundle):
    from project_config import CONTEXT_KEY, load_config

    config = load_config(CDK_JSON_CONTEXT[CONTEXT_KEY])
    bundled = Deployment.from_json((bundle / "deployment.json").read_text())
    assert bundled == deployment_for(config.training)


def test_the_bundled_dependencies_are_the_versions_the_launcher_runs(bundle):
    pins = {}
    for line in (ROOT / "requirements-lambda.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name] = version
    bundled = dict(
        path.name.removesuffix(".dist-info").lower().replace("_", "-").rsplit("-", 1)
        for path in bundle.glob("*.dist-info")
    )
    for name, version in pins.items():
        assert bundled[name.lower().replace("_", "-")] == version, name
        assert importlib.metadata.version(name) == version, f"the launcher runs another {name}"


def _module_path(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


def test_the_bundle_needs_nothing_but_itself_and_the_lambda_runtime(bundle, tmp_path):
    """Its own modules with the same-version dependencies of this machine (the bundle's are built for
    arm64), the runtime's boto3, the standard library, and nothing of the CDK app."""
    for item in ("training_pipeline", "llmft_train", "deployment.json"):
        (tmp_path / item).symlink_to(bundle / item)
    modules = {
        p.name.removesuffix(".py")
        for p in bundle.iterdir()
        if (p.is_dir() or p.suffix == ".py") and not p.name.endswith(".dist-info")
    }
    modules -= {"training_pipeline", "llmft_train"}
    for name in (*sorted(modules), *RUNTIME_PACKAGES):
        path = _module_path(name)
        (tmp_path / path.name).symlink_to(path)
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1])\n"
        "from training_pipeline.handlers import load_deployment, request_problems\n"
        "print(json.dumps(request_problems({'recipe': 'lora', 'adapter_name': 'a_b'}, load_deployment())))\n"
        "app = ('aws_cdk', 'project_config', 'constructs')\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in app]\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", script, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    problems = json.loads(result.stdout)
    assert [p.split(":")[0] for p in problems] == [
        "train_data",
        "base_model",
        "instance_type",
        "adapter_name",
    ]
