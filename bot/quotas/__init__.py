"""Quotas and fair use: per-user limits (``PROOFROOM_QUOTAS__*``), the channel allow list
(``PROOFROOM_ALLOWED_CHANNELS``) and the time zone days are counted in
(``PROOFROOM_TIMEZONE``).

``policy`` holds the settings' model and the local day, ``state`` the Redis counters,
``desk`` the checks made before anything is queued (:class:`QuotaDesk`) and their refusal
(:class:`QuotaExceeded`). Who is charged: a command's and a batch's requester; a content
calendar's weeks go to the pseudo-user ``calendar`` of its platform (its bulk images), so
a calendar never uses up a person's quota and a mistyped calendar cannot flood the queue.

Import from the modules (``bot.settings`` imports ``policy``, so this file imports nothing).
"""
