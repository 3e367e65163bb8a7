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

from hybrid.components.grants import Bucket, grant_in_stack, objects_under
from hybrid.components.roles import OBJECT_ADMIN, OBJECT_CREATOR, OBJECT_VIEWER
from hybrid.components.service_account import ServiceAccount


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

    def grant_write(self, writer: ServiceAccount, *, prefix: str) -> None:
        """``writer`` may create objects under ``prefix``, never replace them: ``<writer>-creates-<prefix>``."""
        self._grant(writer, "creates-", OBJECT_CREATOR, prefix)

    def grant_read(self, reader: ServiceAccount, *, prefix: str) -> None:
        """``reader`` may read objects under ``prefix``: ``<reader>-reads-<prefix>``."""
        self._grant(reader, "reads-", OBJECT_VIEWER, prefix)

    def grant_admin(self, admin: ServiceAccount, *, prefix: str) -> None:
        """``admin`` may create, read, replace and delete objects under ``prefix``: ``<admin>-<prefix>``,
        without a verb, the address it was deployed under."""
        self._grant(admin, "", OBJECT_ADMIN, prefix)

    def _grant(self, to: ServiceAccount, verb: str, role: str, prefix: str) -> None:
        # The binding waits for the bucket: it names the bucket by reference.
        on = Bucket(self.bucket.name, objects_under(self.props.name, prefix))
        grant_in_stack(self, to, verb + prefix.rstrip("/"), role, on)
