"""Slack's roles: user groups. ``PROOFROOM_ADMIN_ROLES`` and ``PROOFROOM_APPROVER_ROLES`` name
them by handle (``design-leads``, as in ``@design-leads``) or id (``S0614TZR7``), as Discord
roles are named by name or id.

The groups come from ``usergroups.list`` with their members (scope ``usergroups:read``),
read at most once per ``ttl_s`` and only when some setting names a role: a workspace that
uses ids alone never needs the scope. When the call fails (scope missing, Slack away), the
last list read is used, or none: roles then grant nothing, which refuses rather than
admits, and the failure is logged once until a read succeeds again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)


class UserGroups:
    """The user groups (handles and ids) each member of the workspace is in."""

    def __init__(
        self,
        *,
        client: WebClient,
        wanted: bool,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.wanted = wanted
        self.ttl_s = ttl_s
        self.clock = clock
        self._members: dict[str, frozenset[str]] = {}
        self._read_at: float | None = None
        self._failing = False
        self._lock = threading.Lock()

    def of(self, user: str) -> frozenset[str]:
        """The handles and ids of ``user``'s groups; empty when no setting names a role."""
        if not self.wanted:
            return frozenset()
        with self._lock:  # one read for a burst of events, not one each
            if self._read_at is None or self.clock() - self._read_at >= self.ttl_s:
                self._refresh()
            return self._members.get(user, frozenset())

    def _refresh(self) -> None:
        try:
            response = self.client.usergroups_list(include_users=True)
        except (SlackApiError, OSError) as exc:
            if not self._failing:
                reason = exc.response.get("error") if isinstance(exc, SlackApiError) else exc
                log.warning(
                    "cannot read the Slack user groups (%s): roles in PROOFROOM_ADMIN_ROLES "
                    "and PROOFROOM_APPROVER_ROLES grant nothing until it works (scope "
                    "usergroups:read; see docs/slack.md)",
                    reason,
                )
            self._failing = True
            self._read_at = self.clock()  # try again after ttl_s, not on every event
            return
        self._members = members_by_user(response.get("usergroups") or [])
        self._read_at = self.clock()
        if self._failing:
            log.info("Slack user groups read again")
        self._failing = False


def members_by_user(groups: list[dict[str, Any]]) -> dict[str, frozenset[str]]:
    """``usergroups.list`` (with users) turned around: user id -> its groups' handles and ids.
    A disabled group (``date_delete`` set) grants nothing."""
    found: dict[str, set[str]] = {}
    for group in groups:
        if group.get("date_delete"):
            continue
        names = {str(group[key]) for key in ("id", "handle") if group.get(key)}
        for user in group.get("users") or []:
            found.setdefault(str(user), set()).update(names)
    return {user: frozenset(names) for user, names in found.items()}


__all__ = ["UserGroups", "members_by_user"]
