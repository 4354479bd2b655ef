"""Data stack (stateful): the project key and the buckets. Retained on delete, termination-protected."""

from typing import Any

from aws_cdk import CfnOutput, Stack

from constructs import Construct
from constructs.llmft_data_store import DATA_PREFIXES, DataStore
from project_config.data import DataConfig


class DataStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DataConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, termination_protection=True, **kwargs)
        self.store = DataStore(self, "Store", config=config)
        CfnOutput(
            self,
            "DataBucketName",
            value=self.store.data_bucket.bucket_name,
            description="Data bucket; prefixes: " + ", ".join(DATA_PREFIXES),
        )
        CfnOutput(self, "ProjectKeyArn", value=self.store.key.key_arn)
