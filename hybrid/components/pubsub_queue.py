"""A work queue on Pub/Sub: a topic, the subscription its consumers pull, and a dead-letter topic
(with a subscription of its own) that a message moves to after too many failed deliveries."""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_google.pubsub_subscription import (
    PubsubSubscription,
    PubsubSubscriptionDeadLetterPolicy,
    PubsubSubscriptionExpirationPolicy,
    PubsubSubscriptionRetryPolicy,
)
from cdktf_cdktf_provider_google.pubsub_topic import PubsubTopic
from constructs import Construct

from hybrid.components.grants import Grantable, Subscription, Topic, grant

PUBLISHER = "roles/pubsub.publisher"
SUBSCRIBER = "roles/pubsub.subscriber"


@dataclass(frozen=True)
class PubSubQueueProps:
    topic: str
    subscription: str
    dead_letter_topic: str
    dead_letter_subscription: str
    ack_deadline_seconds: int
    min_backoff_seconds: int
    max_backoff_seconds: int
    max_delivery_attempts: int
    retention_days: int


def _seconds(value: int) -> str:
    return f"{value}s"


class PubSubQueue(Construct):
    def __init__(self, scope: Construct, id_: str, props: PubSubQueueProps, *, dead_letter_agent: Grantable) -> None:
        super().__init__(scope, id_)
        retention = _seconds(props.retention_days * 86_400)
        # An empty ttl: a subscription nobody pulls from for 31 days is not deleted
        # (registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/pubsub_subscription#expiration_policy).
        never_expires = PubsubSubscriptionExpirationPolicy(ttl="")
        self.topic = PubsubTopic(self, "topic", name=props.topic)
        self.dead_letter_topic = PubsubTopic(self, "dead-letter-topic", name=props.dead_letter_topic)
        self.subscription = PubsubSubscription(
            self,
            "subscription",
            name=props.subscription,
            topic=self.topic.id,
            ack_deadline_seconds=props.ack_deadline_seconds,
            message_retention_duration=retention,
            # A nacked or expired message comes back after an exponentially growing delay.
            retry_policy=PubsubSubscriptionRetryPolicy(
                minimum_backoff=_seconds(props.min_backoff_seconds),
                maximum_backoff=_seconds(props.max_backoff_seconds),
            ),
            dead_letter_policy=PubsubSubscriptionDeadLetterPolicy(
                dead_letter_topic=self.dead_letter_topic.id, max_delivery_attempts=props.max_delivery_attempts
            ),
            expiration_policy=never_expires,
        )
        # Messages published to a topic without subscriptions are lost (cloud.google.com/pubsub/docs/handling-failures).
        self.dead_letter_subscription = PubsubSubscription(
            self,
            "dead-letter-subscription",
            name=props.dead_letter_subscription,
            topic=self.dead_letter_topic.id,
            ack_deadline_seconds=props.ack_deadline_seconds,
            message_retention_duration=retention,
            expiration_policy=never_expires,
        )
        # Pub/Sub moves dead letters as its service agent, ``dead_letter_agent``, which must publish
        # to the dead-letter topic and subscribe to the source subscription
        # (cloud.google.com/pubsub/docs/dead-letter-topics).
        grant(
            self,
            "agent-publishes-dead-letters",
            role=PUBLISHER,
            to=dead_letter_agent,
            on=Topic(self.dead_letter_topic.id),
        )
        grant(
            self,
            "agent-subscribes-source",
            role=SUBSCRIBER,
            to=dead_letter_agent,
            on=Subscription(self.subscription.id),
        )

    @property
    def topic_target(self) -> Topic:
        return Topic(self.topic.id)

    @property
    def dead_letter_topic_target(self) -> Topic:
        return Topic(self.dead_letter_topic.id)

    @property
    def subscriptions(self) -> tuple[Subscription, Subscription]:
        """The line subscription and the dead-letter one: what a consumer pulls from."""
        return Subscription(self.subscription.id), Subscription(self.dead_letter_subscription.id)
