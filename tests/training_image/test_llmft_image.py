"""The Dockerfile's build context, pins and build args (the image is linted and checked, not built)."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import PurePosixPath

from conftest import REPO, TRAINING_IMAGE

DOCKERFILE = (TRAINING_IMAGE / "Dockerfile").read_text()


def arg_default(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert match, f"ARG {name} with a default is missing from the Dockerfile"
    return match.group(1)


def pins(path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            found[name.strip().lower().replace("_", "-")] = version.strip()
    return found


def test_copy_sources_are_inside_the_build_context_and_not_ignored():
    sources = []
    for line in DOCKERFILE.splitlines():
        if line.startswith(("COPY ", "ADD ")):
            parts = [p for p in line.split()[1:] if not p.startswith("--")]
            sources.extend(parts[:-1])
    assert sources, "no COPY found"
    included = [
        line[1:].rstrip("/")
        for line in (TRAINING_IMAGE / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for source in sources:
        assert not source.startswith(("/", "..")), f"{source} is outside the build context"
        assert (TRAINING_IMAGE / source).exists(), f"COPY {source}: no such file in training_image/"
        assert any(fnmatch(source.rstrip("/"), pattern) for pattern in included), (
            f"{source} is excluded by .dockerignore"
        )


def test_base_image_is_the_sagemaker_pytorch_training_dlc_on_cuda_12():
    assert "/pytorch-training:${BASE_TAG}" in DOCKERFILE
    # The registry host comes whole from the build (the partition's domain); the default is us-east-1's.
    assert re.fullmatch(
        r"763104351884\.dkr\.ecr\.[a-z]{2}(-[a-z]+)+-\d\.amazonaws\.com", arg_default("BASE_REGISTRY")
    )
    assert re.fullmatch(r"\d+\.\d+\.\d+-gpu-py3\d+-cu12\d-ubuntu22\.04-sagemaker", arg_default("BASE_TAG"))


def test_flash_attention_wheel_matches_the_base_torch_cuda_and_python():
    tag = arg_default("BASE_TAG")
    torch_version = ".".join(tag.split("-")[0].split(".")[:2])
    python = tag.split("-")[2].replace("py", "cp")
    wheel = arg_default("FLASH_ATTN_WHEEL")
    assert wheel.endswith(".whl"), "FlashAttention must come as a prebuilt wheel, not be compiled"
    assert f"cu12torch{torch_version}" in wheel
    assert f"-{python}-{python}-linux_x86_64.whl" in wheel


def test_telemetry_and_version_checks_are_off():
    for setting in (
        "DISABLE_VERSION_CHECK=1",
        "HF_HUB_DISABLE_TELEMETRY=1",
        "DO_NOT_TRACK=1",
        "WANDB_DISABLED=true",
    ):
        assert setting in DOCKERFILE, f"{setting} missing from the Dockerfile's ENV"


def test_image_and_test_environment_pin_the_same_training_stack():
    image = pins(TRAINING_IMAGE / "requirements-image.txt")
    tests = pins(REPO / "requirements-train.txt")
    assert image["llamafactory"] == "0.9.5"
    for required in ("deepspeed", "bitsandbytes", "liger-kernel"):
        assert required in image, f"{required} is not pinned for the image"
    shared = sorted(set(image) & set(tests))
    assert {"llamafactory", "transformers", "peft", "trl", "accelerate", "datasets"} <= set(shared)
    differing = {name: (image[name], tests[name]) for name in shared if image[name] != tests[name]}
    assert not differing, f"image and tests pin different versions: {differing}"


def test_every_test_requirement_is_pinned_exactly():
    for line in (REPO / "requirements-train.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[A-Za-z0-9_.+\-]+", line), f"not pinned: {line}"


def test_train_console_script_and_recipe_files_are_packaged():
    project = tomllib.loads((TRAINING_IMAGE / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["train"] == "llmft_train.cli:main"
    globs = project["tool"]["setuptools"]["package-data"]["llmft_train"]
    package = TRAINING_IMAGE / "llmft_train"
    for path in (package / "recipes").rglob("*"):
        if path.is_file():
            # setuptools globs, like PurePosixPath.match, do not let `*` cross a folder.
            relative = PurePosixPath(path.relative_to(package).as_posix())
            assert any(relative.match(pattern) for pattern in globs), f"{relative} is not packaged"
