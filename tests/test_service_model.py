"""The checker the pipeline's requests are held to can fail: it reports what SageMaker would refuse."""

from tests import service_model

MINIMAL = {
    "TrainingJobName": "ok-name",
    "RoleArn": "arn:aws:iam::123456789012:role/r",
    "AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "File"},
    "OutputDataConfig": {"S3OutputPath": "s3://bucket/training/"},
    "ResourceConfig": {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
}


def test_a_valid_request_has_no_problems():
    assert service_model.request_problems("sagemaker", "CreateTrainingJob", MINIMAL) == []


def test_patterns_lengths_enums_and_counts_are_checked_beyond_botocores_own_validator():
    bad = {
        **MINIMAL,
        "TrainingJobName": "bad_name_" + "x" * 60,
        "ResourceConfig": {**MINIMAL["ResourceConfig"], "InstanceType": "ml.g5.3xlarge"},
        "HyperParameters": {f"k{i}": "v" for i in range(101)} | {"long": "x" * 2501},
    }
    problems = service_model.request_problems("sagemaker", "CreateTrainingJob", bad)
    text = "\n".join(problems)
    assert "TrainingJobName: 69 characters, at most 63" in text
    assert "does not match [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}" in text
    assert "'ml.g5.3xlarge' is not one of the" in text
    assert "HyperParameters: 102 entries, at most 100" in text
    assert "HyperParameters['long']: 2501 characters, at most 2500" in text


def test_botocores_own_validator_still_runs():
    problems = service_model.request_problems("sagemaker", "CreateTrainingJob", {"TrainingJobName": "x"})
    assert problems and "Missing required parameter" in problems[0]
