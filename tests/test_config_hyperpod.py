"""cdk.json context llmft.hyperpod -> HyperPodConfig: defaults, and one clear error per bad value."""

import pytest

from project_config import ConfigError, load_config
from tests.conftest import project_context

PINNED = {
    "account": "123456789012",
    "region": "eu-west-1",
    "network": {"availability_zones": ["eu-west-1a", "eu-west-1b"]},
}


def test_cdk_json_defaults():
    config = load_config(project_context()).hyperpod
    assert not config.enabled, "HyperPod costs money while it runs: off unless switched on"
    assert config.availability_zone == 0
    assert (config.controller.instance_type, config.controller.count) == ("ml.c5.xlarge", 1)
    assert config.login is None
    assert [(g.name, g.instance_type, g.count, g.partition) for g in config.workers] == [
        ("workers", "ml.g5.12xlarge", 2, "gpu")
    ]
    assert (config.fsx.storage_gib, config.fsx.throughput_per_tib, config.fsx.on_delete) == (
        1200,
        250,
        "retain",
    )
    assert config.fsx.import_prefixes == ("datasets/", "models/")
    assert config.fsx.export_prefixes == ("hyperpod/",)
    assert load_config({}).hyperpod == config, "cdk.json and the code's defaults agree"


def test_a_pinned_zone_may_be_named():
    config = load_config(project_context({**PINNED, "hyperpod": {"availability_zone": "eu-west-1b"}}))
    assert config.hyperpod.availability_zone == "eu-west-1b"


def test_worker_partition_defaults_to_the_group_name():
    config = load_config(
        project_context(
            {"hyperpod": {"workers": [{"name": "p5", "instance_type": "ml.p5.48xlarge", "count": 1}]}}
        )
    )
    (group,) = config.hyperpod.workers
    assert (group.partition, group.ebs_volume_gib) == ("p5", 500)


@pytest.mark.parametrize("storage", [1200, 2400, 4800, 9600])
def test_persistent_2_sizes_are_accepted(storage):
    config = load_config(project_context({"hyperpod": {"fsx": {"storage_gib": storage}}}))
    assert config.hyperpod.fsx.storage_gib == storage


BAD_VALUES = [
    ({"hyperpod": {"enabled": "yes"}}, "llmft.hyperpod.enabled", "true or false"),
    ({"hyperpod": {"availability_zone": 2}}, "llmft.hyperpod.availability_zone", "integer from 0 to 1"),
    ({"hyperpod": {"availability_zone": "eu-west-1a"}}, "llmft.hyperpod.availability_zone", "index 0 or 1"),
    (
        {**PINNED, "hyperpod": {"availability_zone": "eu-west-1c"}},
        "llmft.hyperpod.availability_zone",
        "one of: eu-west-1a, eu-west-1b",
    ),
    ({"hyperpod": {"availability_zone": None}}, "llmft.hyperpod.availability_zone", "expected 0, 1"),
    ({"hyperpod": {"controller": {"count": 2}}}, "llmft.hyperpod.controller.count", "unknown key"),
    (
        {"hyperpod": {"controller": {"instance_type": "c5.xlarge"}}},
        "llmft.hyperpod.controller.instance_type",
        "instance type such as ml.g5.2xlarge",
    ),
    ({"hyperpod": {"controller": {"name": "head"}}}, "llmft.hyperpod.controller.name", "unknown key"),
    ({"hyperpod": {"login": {"count": 0}}}, "llmft.hyperpod.login.count", "integer from 1 to 256"),
    ({"hyperpod": {"workers": []}}, "llmft.hyperpod.workers", "non-empty list"),
    ({"hyperpod": {"workers": [{"count": 2}]}}, "llmft.hyperpod.workers[0].name", "group name"),
    ({"hyperpod": {"workers": [{"name": "login"}]}}, "llmft.hyperpod.workers[0].name", "other than"),
    ({"hyperpod": {"workers": [{"name": "gpu_nodes"}]}}, "llmft.hyperpod.workers[0].name", "letters, digits"),
    (
        {"hyperpod": {"workers": [{"name": "a"}, {"name": "a"}]}},
        "llmft.hyperpod.workers",
        "distinct group names",
    ),
    (
        {"hyperpod": {"workers": [{"name": "w", "ebs_volume_gib": 20000}]}},
        "llmft.hyperpod.workers[0].ebs_volume_gib",
        "integer from 1 to 16384",
    ),
    (
        {"hyperpod": {"workers": [{"name": "w", "partition": "gpu dev"}]}},
        "llmft.hyperpod.workers[0].partition",
        "Slurm partition name",
    ),
    ({"hyperpod": {"fsx": {"storage_gib": 2000}}}, "llmft.hyperpod.fsx.storage_gib", "multiple of 2400"),
    ({"hyperpod": {"fsx": {"storage_gib": 3600}}}, "llmft.hyperpod.fsx.storage_gib", "multiple of 2400"),
    ({"hyperpod": {"fsx": {"throughput_per_tib": 200}}}, "llmft.hyperpod.fsx.throughput_per_tib", "125, 250"),
    ({"hyperpod": {"fsx": {"on_delete": "snapshot"}}}, "llmft.hyperpod.fsx.on_delete", "retain, delete"),
    (
        {"hyperpod": {"fsx": {"import_prefixes": ["/datasets"]}}},
        "llmft.hyperpod.fsx.import_prefixes",
        "ending in '/'",
    ),
    (
        {"hyperpod": {"fsx": {"import_prefixes": ["datasets/"], "export_prefixes": ["datasets/"]}}},
        "llmft.hyperpod.fsx.export_prefixes",
        "not both",
    ),
    (
        {"hyperpod": {"fsx": {"import_prefixes": [], "export_prefixes": []}}},
        "llmft.hyperpod.fsx.import_prefixes/export_prefixes",
        "1 to 8 prefixes",
    ),
    (
        {"hyperpod": {"fsx": {"import_prefixes": [f"p{i}/" for i in range(9)], "export_prefixes": []}}},
        "llmft.hyperpod.fsx.import_prefixes/export_prefixes",
        "1 to 8 prefixes",
    ),
    ({"hyperpod": {"fsx": {"size": 1200}}}, "llmft.hyperpod.fsx.size", "unknown key"),
    ({"hyperpod": {"cluster_name": "x"}}, "llmft.hyperpod.cluster_name", "unknown key"),
]


@pytest.mark.parametrize(("overrides", "key", "allowed"), BAD_VALUES)
def test_bad_values_name_the_key_the_value_and_what_is_allowed(overrides, key, allowed):
    with pytest.raises(ConfigError) as error:
        load_config(project_context(overrides))
    assert error.value.key == key, str(error.value)
    assert allowed in str(error.value), str(error.value)
    assert str(error.value).startswith(f"cdk.json context {key} = ")
