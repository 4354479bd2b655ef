"""The example notebooks and the sample dataset shipped to the notebook instance."""

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from constructs.llmft_notebook import EXAMPLES_DIR

NOTEBOOKS = sorted(EXAMPLES_DIR.glob("*.ipynb"))
EXPECTED = [
    "01_qlora_sft_in_the_notebook.ipynb",
    "02_chat_with_the_adapter.ipynb",
    "03_start_a_training_job.ipynb",
    "04_call_the_endpoint_with_an_adapter.ipynb",
]
SECRETS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key": re.compile(r"aws_secret_access_key|SecretAccessKey", re.IGNORECASE),
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "account id": re.compile(r"\b\d{12}\b"),
}


def code(notebook: Path) -> str:
    nb = nbformat.read(notebook, as_version=4)
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")


def test_the_four_examples_are_shipped():
    assert [path.name for path in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_valid_nbformat_4_for_the_llamafactory_kernel(notebook):
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.kernelspec.name == "llamafactory", "the kernel the lifecycle registers"
    assert nb.cells[0].cell_type == "markdown", "each notebook opens by saying what it does"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_carries_no_outputs(notebook):
    nb = nbformat.read(notebook, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {index} has outputs"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_carries_no_secrets(notebook):
    text = notebook.read_text()
    for what, pattern in SECRETS.items():
        assert not pattern.search(text), f"{notebook.name} contains what looks like an {what}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_every_code_cell_is_valid_python(notebook):
    nb = nbformat.read(notebook, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            # IPython's shell escapes (`!cmd`) are not Python.
            source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("!"))
            try:
                ast.parse(source)
            except SyntaxError as error:
                pytest.fail(f"{notebook.name} cell {index}: {error}")


def test_every_example_reads_the_settings_on_start_writes():
    for notebook in NOTEBOOKS:
        assert "SageMaker/.llmft/settings.json" in code(notebook), notebook.name


def test_the_qlora_notebook_trains_4_bit_lora_on_the_shipped_dataset():
    source = code(EXAMPLES_DIR / EXPECTED[0])
    for fragment in [
        '"finetuning_type": "lora"',
        '"quantization_bit": 4',
        '"dataset": "sample_alpaca"',
        'EXAMPLES / "data"',
        "llamafactory-cli",
        'f"adapters/{ADAPTER_NAME}/',
    ]:
        assert fragment in source, f"QLoRA notebook lost {fragment}"


def test_the_chat_notebook_loads_the_adapter_with_llamafactory():
    source = code(EXAMPLES_DIR / EXPECTED[1])
    assert "from llamafactory.chat import ChatModel" in source
    assert '"adapter_name_or_path": str(ADAPTER_DIR)' in source


def test_the_pipeline_notebook_starts_and_follows_an_execution():
    source = code(EXAMPLES_DIR / EXPECTED[2])
    assert 'SETTINGS["training_state_machine_arn"]' in source
    assert "sfn.start_execution(" in source and "sfn.describe_execution(" in source


def test_the_qlora_notebook_can_register_its_adapter_like_the_pipeline_does():
    source = code(EXAMPLES_DIR / EXPECTED[0])
    # The Inference stack's registration reads these manifest fields and wants the artifact under training/.
    for field in ["adapter_name", "model_artifact", "training_job_name", "base_model"]:
        assert f'"{field}":' in source, f"manifest lacks {field}"
    assert 'artifact_key = f"training/{job_name}/output/model.tar.gz"' in source
    assert 'job_name = f"notebook-{ADAPTER_NAME}-' in source, "the role may write training/notebook-* only"
    assert 'Key=f"adapters/{ADAPTER_NAME}/manifest.json"' in source and 'IfNoneMatch="*"' in source


def test_the_pipeline_request_uses_the_pipelines_fields():
    source = code(EXAMPLES_DIR / EXPECTED[2])
    for field in [
        "recipe",
        "adapter_name",
        "train_data",
        "base_model",
        "instance_type",
        "use_spot",
        "max_runtime_hours",
        "hyperparameters",
    ]:
        assert f'"{field}":' in source, f"request lacks {field}"


def test_the_endpoint_notebook_names_the_adapters_inference_component():
    source = code(EXAMPLES_DIR / EXPECTED[3])
    assert 'COMPONENT_PREFIX = "llmft-"' in source, (
        "the Inference stack names components <stack_prefix>-<adapter>"
    )
    assert 'InferenceComponentName=f"{COMPONENT_PREFIX}{adapter}"' in source
    assert 'boto3.client("sagemaker-runtime"' in source


def test_the_sample_dataset_is_alpaca_with_about_fifty_rows():
    rows = [json.loads(line) for line in (EXAMPLES_DIR / "data/sample_alpaca.jsonl").read_text().splitlines()]
    assert len(rows) == 50
    for number, row in enumerate(rows, 1):
        assert set(row) == {"instruction", "input", "output"}, f"row {number}: {sorted(row)}"
        assert row["instruction"].strip() and row["output"].strip(), f"row {number} is empty"
    assert len({row["instruction"] + row["input"] for row in rows}) == len(rows), "duplicate examples"


def test_dataset_info_describes_the_sample_dataset_for_llamafactory():
    info = json.loads((EXAMPLES_DIR / "data/dataset_info.json").read_text())
    entry = info["sample_alpaca"]
    assert (EXAMPLES_DIR / "data" / entry["file_name"]).is_file()
    assert entry["formatting"] == "alpaca"
    assert entry["columns"] == {"prompt": "instruction", "query": "input", "response": "output"}


def test_the_qlora_notebook_releases_its_adapter_without_replacing_one(tmp_path):
    """The release cell as the notebook runs it, against moto's S3 (which answers an existing key under
    If-None-Match with 412 PreconditionFailed, as the S3 User Guide's conditional writes describe)."""
    import boto3
    from moto import mock_aws

    nb = nbformat.read(EXAMPLES_DIR / EXPECTED[0], as_version=4)
    (release,) = [cell.source for cell in nb.cells if cell.source.startswith("released = []")]
    output = tmp_path / "demo"
    output.mkdir()
    (output / "adapter_config.json").write_text("{}")
    (output / "adapter_model.safetensors").write_bytes(b"weights")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="llmft-data")
        scope = {"s3": s3, "BUCKET": "llmft-data", "ADAPTER_NAME": "demo", "OUTPUT_DIR": output}
        exec(release, dict(scope))
        (output / "adapter_model.safetensors").write_bytes(b"retrained")
        with pytest.raises(SystemExit, match="adapters/demo/adapter_config.json exists already"):
            exec(release, dict(scope))
        stored = s3.get_object(Bucket="llmft-data", Key="adapters/demo/adapter_model.safetensors")
        assert stored["Body"].read() == b"weights", "the released adapter is kept"
