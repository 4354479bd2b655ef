"""Python Lambda code bundled on this machine at synth: our own modules, pinned dependencies, generated files.

No Docker and no network, so `make synth` stays offline: the dependencies are the wheels `make install`
put in build/lambda-python/ (requirements-lambda.txt, for the functions' Python version and architecture);
synth only copies files into the asset.
"""

import shutil
from collections.abc import Mapping
from pathlib import Path

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_DEPENDENCIES = ROOT / "build" / "lambda-python"
# The dependencies in build/lambda-python are wheels for this runtime and architecture (see the Makefile).
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_14
LAMBDA_ARCHITECTURE = lambda_.Architecture.ARM_64
_SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc")


@jsii.implements(cdk.ILocalBundling)
class _CopyFiles:
    def __init__(self, files: Mapping[str, Path], generated: Mapping[str, str], dependencies: Path) -> None:
        self.files, self.generated, self.dependencies = dict(files), dict(generated), dependencies

    def try_bundle(self, output_dir: str, _options: cdk.BundlingOptions) -> bool:
        if not (self.dependencies / ".installed").is_file():
            raise RuntimeError(
                f"{self.dependencies} is missing or incomplete: run `make install` (it fetches the Lambda "
                "functions' pinned dependencies once; synth itself needs no network)"
            )
        out = Path(output_dir)
        shutil.copytree(
            self.dependencies, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".installed")
        )
        for target, source in self.files.items():
            (out / target).parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, out / target, dirs_exist_ok=True, ignore=_SKIPPED)
            else:
                shutil.copy2(source, out / target)
        for target, text in self.generated.items():
            (out / target).write_text(text)
        return True


def python_bundle(
    files: Mapping[str, Path], generated: Mapping[str, str], dependencies: Path = LAMBDA_DEPENDENCIES
) -> lambda_.Code:
    """Code made of `files` (target path in the bundle -> source), `generated` texts and the dependencies."""
    return lambda_.Code.from_asset(
        str(ROOT / "training_pipeline"),
        # The output is what deploys; it changes with the files, the generated settings and the pins.
        asset_hash_type=cdk.AssetHashType.OUTPUT,
        bundling=cdk.BundlingOptions(
            # Never pulled: local bundling always answers (or fails with its own message).
            image=cdk.DockerImage.from_registry("local-bundling-only"),
            local=_CopyFiles(files, generated, dependencies),
        ),
    )
