"""Delivery of approved images to a CMS by webhook: each approval goes into an outbox in
Redis (``state``) and is POSTed as signed JSON (``payload``, ``signing``, ``transport``) by
a thread beside the event pump (``deliverer``), with retries, once. See docs/webhooks.md."""

from bot.webhooks.deliverer import WebhookDeliverer, WebhookTarget, backoff_s
from bot.webhooks.payload import Approval, approval_of
from bot.webhooks.state import WebhookState

__all__ = [
    "Approval",
    "WebhookDeliverer",
    "WebhookState",
    "WebhookTarget",
    "approval_of",
    "backoff_s",
]
