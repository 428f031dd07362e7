"""A chat platform for tests, shipped with the bot: :class:`FakeChat` (a conversation on the
real service, Redis and worker) and the pytest plugin (``bot.testing.plugin``)."""

from bot.testing.chat import FakeAdapter, FakeChat, FakeMessage, Reply

__all__ = ["FakeAdapter", "FakeChat", "FakeMessage", "Reply"]
