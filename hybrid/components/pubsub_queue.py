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

from hybrid.components.grants import Grantable, Subscription, Topic, grant_in_stack
from hybrid.components.roles import PUBLISHER, SUBSCRIBER
from hybrid.components.service_account import ServiceAccount
from hybrid.config.workers import QueueSettings


@dataclass(frozen=True)
class PubSubQueueProps:
    topic: str
    subscription: str
    dead_letter_topic: str
    dead_letter_subscription: str
    # The environment file's [workers.queue]: deadlines, backoff, attempts, retention. Its defaults are the queue's.
    settings: QueueSettings


def _seconds(value: int) -> str:
    return f"{value}s"


class PubSubQueue(Construct):
    """``messages`` names what the queue carries, in its grants' ids (``worker-pulls-lines``)."""

    def __init__(
        self, scope: Construct, id_: str, props: PubSubQueueProps, *, messages: str, dead_letter_agent: Grantable
    ) -> None:
        super().__init__(scope, id_)
        self.messages = messages
        self.props = props
        self.topic = PubsubTopic(self, "topic", name=props.topic)
        self.dead_letter_topic = PubsubTopic(self, "dead-letter-topic", name=props.dead_letter_topic)
        settings = props.settings
        self.subscription = self._subscription(
            "subscription",
            props.subscription,
            self.topic,
            # A nacked or expired message comes back after an exponentially growing delay.
            retry_policy=PubsubSubscriptionRetryPolicy(
                minimum_backoff=_seconds(settings.min_backoff_seconds),
                maximum_backoff=_seconds(settings.max_backoff_seconds),
            ),
            dead_letter_policy=PubsubSubscriptionDeadLetterPolicy(
                dead_letter_topic=self.dead_letter_topic.id, max_delivery_attempts=settings.max_delivery_attempts
            ),
        )
        # Messages published to a topic without subscriptions are lost (cloud.google.com/pubsub/docs/handling-failures).
        self.dead_letter_subscription = self._subscription(
            "dead-letter-subscription", props.dead_letter_subscription, self.dead_letter_topic
        )
        # Pub/Sub moves dead letters as its service agent, ``dead_letter_agent``, which must publish
        # to the dead-letter topic and subscribe to the source subscription
        # (cloud.google.com/pubsub/docs/dead-letter-topics).
        self._dead_letters = Topic(self.dead_letter_topic.id)
        self._dead_letters.bind(self, "agent-publishes-dead-letters", PUBLISHER, dead_letter_agent.member)
        Subscription(self.subscription.id).bind(self, "agent-subscribes-source", SUBSCRIBER, dead_letter_agent.member)

    def _subscription(
        self,
        id_: str,
        name: str,
        topic: PubsubTopic,
        retry_policy: PubsubSubscriptionRetryPolicy | None = None,
        dead_letter_policy: PubsubSubscriptionDeadLetterPolicy | None = None,
    ) -> PubsubSubscription:
        settings = self.props.settings
        return PubsubSubscription(
            self,
            id_,
            name=name,
            topic=topic.id,
            ack_deadline_seconds=settings.ack_deadline_seconds,
            message_retention_duration=_seconds(settings.retention_days * 86_400),
            retry_policy=retry_policy,
            dead_letter_policy=dead_letter_policy,
            # An empty ttl: a subscription nobody pulls from for 31 days is not deleted
            # (registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/pubsub_subscription#expiration_policy).
            expiration_policy=PubsubSubscriptionExpirationPolicy(ttl=""),
        )

    def grant_publish(self, publisher: ServiceAccount) -> None:
        """``publisher`` may send messages to the queue: ``<publisher>-publishes-<messages>``."""
        grant_in_stack(self, publisher, f"publishes-{self.messages}", PUBLISHER, Topic(self.topic.id))

    def grant_consume(self, consumer: ServiceAccount) -> None:
        """What a consumer does: pulls both subscriptions, puts back on the topic a message it found
        stuck, and moves to the dead letters one it gives up on."""
        grant_in_stack(self, consumer, f"pulls-{self.messages}", SUBSCRIBER, Subscription(self.subscription.id))
        grant_in_stack(self, consumer, "pulls-dead-letters", SUBSCRIBER, Subscription(self.dead_letter_subscription.id))
        grant_in_stack(self, consumer, f"republishes-{self.messages}", PUBLISHER, Topic(self.topic.id))
        grant_in_stack(self, consumer, "publishes-dead-letters", PUBLISHER, self._dead_letters)
