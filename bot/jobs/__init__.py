"""Single jobs, the unit every workflow is built on: from a request to a spec (``resolve``,
with attached images checked in ``attachments`` and ``inputs``, and whether its model has a
worker in ``routing``), job events into threads
(``delivery``, driven by the event loop in ``pump``), the jobs a bot follows through a Redis
outage (``followed``), the commands about the bot (``meta``), and ``proofroom generate``
(``generate``, imported on use)."""

from bot.jobs.attachments import AttachmentError, check_declared_size, checked_attachment
from bot.jobs.delivery import Delivery, spec_summary
from bot.jobs.followed import FollowedJobs
from bot.jobs.inputs import JobInputs, post_inputs
from bot.jobs.pump import EventPump
from bot.jobs.resolve import JobResolver, ResolvedJob
from bot.jobs.routing import NoWorkerError, Routing

__all__ = [
    "AttachmentError",
    "Delivery",
    "EventPump",
    "FollowedJobs",
    "JobInputs",
    "JobResolver",
    "NoWorkerError",
    "ResolvedJob",
    "Routing",
    "check_declared_size",
    "checked_attachment",
    "post_inputs",
    "spec_summary",
]
