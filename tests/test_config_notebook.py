"""The `notebook` config section: documented defaults and one clear error per bad value."""

import pytest

from project_config import ConfigError, load_config
from project_config.notebook import NotebookConfig, parse_notebook
from tests.conftest import project_context


def test_cdk_json_defaults_match_the_documented_ones():
    config = load_config(project_context()).notebook
    assert config == NotebookConfig(), "cdk.json's notebook section drifted from the documented defaults"
    assert config.enabled is False, "a GPU notebook costs money: off unless switched on"
    assert (config.instance_type, config.volume_size_gb) == ("ml.g5.2xlarge", 100)
    assert (config.root_access, config.idle_timeout_minutes, config.llamafactory_version) == (
        False,
        60,
        "0.9.5",
    )
    assert config.auto_stop


def test_zero_idle_minutes_switches_auto_stop_off():
    assert parse_notebook({"idle_timeout_minutes": 0}).auto_stop is False


def test_every_key_is_configurable():
    raw = {
        "enabled": True,
        "instance_type": "ml.g6e.xlarge",
        "volume_size_gb": 500,
        "root_access": True,
        "idle_timeout_minutes": 1440,
        "llamafactory_version": "0.9.4",
    }
    assert parse_notebook(raw) == NotebookConfig(**raw)


BAD_VALUES = [
    ({"enabled": "yes"}, "llmft.notebook.enabled", "expected true or false"),
    (
        {"instance_type": "g5.2xlarge"},
        "llmft.notebook.instance_type",
        "with NVIDIA GPUs such as ml.g5.2xlarge",
    ),
    ({"volume_size_gb": 4}, "llmft.notebook.volume_size_gb", "integer from 5 to 16384"),
    ({"volume_size_gb": 16385}, "llmft.notebook.volume_size_gb", "integer from 5 to 16384"),
    ({"volume_size_gb": 100.5}, "llmft.notebook.volume_size_gb", "integer from 5 to 16384"),
    ({"root_access": "false"}, "llmft.notebook.root_access", "expected true or false"),
    ({"idle_timeout_minutes": -1}, "llmft.notebook.idle_timeout_minutes", "integer from 0 to 1440"),
    ({"idle_timeout_minutes": 1441}, "llmft.notebook.idle_timeout_minutes", "integer from 0 to 1440"),
    ({"idle_timeout_minutes": True}, "llmft.notebook.idle_timeout_minutes", "integer from 0 to 1440"),
    (
        {"llamafactory_version": "latest"},
        "llmft.notebook.llamafactory_version",
        "exact release such as 0.9.5",
    ),
    ({"llamafactory_version": ">=0.9"}, "llmft.notebook.llamafactory_version", "exact release such as 0.9.5"),
    ({"idle_minutes": 30}, "llmft.notebook.idle_minutes", "unknown key; allowed keys: enabled, idle_timeout"),
]


@pytest.mark.parametrize(("section", "key", "rule"), BAD_VALUES, ids=[f"{c[1]}={c[0]}" for c in BAD_VALUES])
def test_a_bad_value_names_its_key_value_and_rule(section, key, rule):
    with pytest.raises(ConfigError) as error:
        load_config(project_context({"notebook": section}))
    message = str(error.value)
    assert message.startswith(f"cdk.json context {key} = "), message
    assert rule in message, message


def test_the_section_must_be_an_object():
    with pytest.raises(ConfigError, match=r"llmft.notebook = 'on' is invalid: expected a JSON object"):
        load_config(project_context({"notebook": "on"}))


def test_an_enabled_notebook_needs_a_nat_gateway():
    with pytest.raises(ConfigError) as error:
        load_config(project_context({"notebook": {"enabled": True}, "network": {"nat_gateways": 0}}))
    assert str(error.value) == (
        "cdk.json context llmft.notebook.enabled = True is invalid: the notebook needs "
        "llmft.network.nat_gateways >= 1 to install its LLaMA-Factory environment"
    )


def test_a_disabled_notebook_allows_an_isolated_network():
    assert load_config(project_context({"network": {"nat_gateways": 0}})).notebook.enabled is False
