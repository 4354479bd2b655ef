"""The project's one configuration object, read once from `cdk.json` context in `app.py`."""

from project_config.checks import ConfigError
from project_config.loader import CONTEXT_KEY, ProjectConfig, context_with_override, load_config

__all__ = ["CONTEXT_KEY", "ConfigError", "ProjectConfig", "context_with_override", "load_config"]
