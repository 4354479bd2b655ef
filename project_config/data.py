"""Data store settings: object lifecycle of the data and access-log buckets."""

from dataclasses import dataclass
from typing import Any

from project_config import checks


@dataclass(frozen=True)
class DataConfig:
    abort_incomplete_upload_days: int = 7
    noncurrent_version_expiration_days: int = 30
    access_log_expiration_days: int = 365


def parse_data(raw: Any, key: str = "llmft.data") -> DataConfig:
    get = checks.section_fields(raw, key, DataConfig)
    return DataConfig(
        abort_incomplete_upload_days=checks.integer(
            f"{key}.abort_incomplete_upload_days",
            get("abort_incomplete_upload_days"),
            minimum=1,
            maximum=365,
        ),
        noncurrent_version_expiration_days=checks.integer(
            f"{key}.noncurrent_version_expiration_days",
            get("noncurrent_version_expiration_days"),
            minimum=1,
            maximum=3650,
        ),
        access_log_expiration_days=checks.integer(
            f"{key}.access_log_expiration_days",
            get("access_log_expiration_days"),
            minimum=30,
            maximum=3650,
        ),
    )
