"""Variations and upscales of a posted image (``desk``), from a reaction or from
``/imagine vary JOB#K`` / ``/imagine upscale JOB#K`` (parsed in ``request``)."""

from bot.followups.desk import FollowupDesk, Queued, QueueFollowup
from bot.followups.request import FollowupRequest, FollowupUsage, is_followup, parse_followup

__all__ = [
    "FollowupDesk",
    "FollowupRequest",
    "FollowupUsage",
    "QueueFollowup",
    "Queued",
    "is_followup",
    "parse_followup",
]
