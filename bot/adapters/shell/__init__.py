"""The terminal as a chat channel: the adapter and ``proofroom shell`` (``cli``)."""

from bot.adapters.shell.adapter import ShellAdapter

__all__ = ["ShellAdapter"]
