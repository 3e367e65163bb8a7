"""The bucket a batch job's input and output files live in: private, uniform access, each object
deleted a fixed number of days after it was written."""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_google.storage_bucket import (
    StorageBucket,
    StorageBucketLifecycleRule,
    StorageBucketLifecycleRuleAction,
    StorageBucketLifecycleRuleCondition,
    StorageBucketVersioning,
)
from constructs import Construct

from hybrid.components.grants import Bucket, objects_under


@dataclass(frozen=True)
class BatchBucketProps:
    name: str
    location: str
    delete_after_days: int
    # False: a bucket that still holds files cannot be destroyed.
    force_destroy: bool = False


class BatchBucket(Construct):
    def __init__(self, scope: Construct, id_: str, props: BatchBucketProps) -> None:
        super().__init__(scope, id_)
        self.props = props
        self.bucket = StorageBucket(
            self,
            "bucket",
            name=props.name,
            location=props.location,
            # IAM only, no object ACLs: the prefix conditions below are IAM conditions, which need it
            # (cloud.google.com/storage/docs/uniform-bucket-level-access).
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            # Every object is written once (ifGenerationMatch=0) and never replaced: nothing to version.
            versioning=StorageBucketVersioning(enabled=False),
            lifecycle_rule=[
                StorageBucketLifecycleRule(
                    condition=StorageBucketLifecycleRuleCondition(age=props.delete_after_days),
                    action=StorageBucketLifecycleRuleAction(type="Delete"),
                )
            ],
            force_destroy=props.force_destroy,
        )

    def objects_under(self, prefix: str) -> Bucket:
        """The bucket's objects under ``prefix``, as a grant's target (the binding waits for the bucket)."""
        return Bucket(self.bucket.name, objects_under(self.props.name, prefix))
