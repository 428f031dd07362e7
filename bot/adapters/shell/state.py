"""What the terminal channel remembers across sessions, in Redis under ``{key_prefix}:shell:``:

- ``ids`` counter: message ids (``s1``, ``s2``...) never start over, so a new session's
  messages never take the id, and with it the votes and image record, of an earlier one;
- ``messages`` hash: message id -> its place (channel, thread), so ``:react s7`` finds a
  message of an earlier session;
- ``images`` list of the votable images' message ids: image ``#N`` is the N-th, whichever
  session posted it; ``numbers`` hash: message id -> its number.

With the private ``redis-server`` (or ``REDIS_URL``) an image left pending when the shell
stopped can be voted on after a restart by the number it was shown with. The hashes and the
list expire with the bot's state (``state_ttl_days`` after their last write); the counter is
kept, being one number.
"""

from __future__ import annotations

import json
from typing import Any, cast

import redis as redis_lib

from bot.ports import MessageRef
from engine.redis_values import as_text


class ShellState:
    """The shell's message ids and image numbers in Redis; holds no data."""

    def __init__(self, *, redis: redis_lib.Redis, key_prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.base = f"{key_prefix}:shell"
        self.ttl_s = ttl_s

    def next_id(self) -> str:
        """A message id no session has used yet."""
        return f"s{self.redis.incr(self._key('ids'))}"

    def remember(self, message: MessageRef) -> None:
        """Keep where ``message`` lives, for :meth:`message`."""
        key = self._key("messages")
        with self.redis.pipeline() as pipe:
            pipe.hset(key, message.id, json.dumps(message.to_dict()))
            pipe.expire(key, self.ttl_s)
            pipe.execute()

    def message(self, message_id: str) -> MessageRef | None:
        """The message of that id, from this session or an earlier one."""
        raw = self.redis.hget(self._key("messages"), message_id)
        return MessageRef.from_dict(json.loads(as_text(raw))) if raw else None

    def number_image(self, message: MessageRef) -> int:
        """Give a votable image the next number; returns it."""
        images, numbers = self._key("images"), self._key("numbers")
        number = cast(int, self.redis.rpush(images, message.id))
        with self.redis.pipeline() as pipe:
            pipe.hset(numbers, message.id, str(number))
            for key in (images, numbers):
                pipe.expire(key, self.ttl_s)
            pipe.execute()
        return number

    def image(self, number: int) -> MessageRef | None:
        """The image shown as ``#number``, or None."""
        if number < 1:
            return None
        raw = self.redis.lindex(self._key("images"), number - 1)
        return self.message(as_text(raw)) if raw is not None else None

    def number_of(self, message: MessageRef) -> int | None:
        """The number an image was shown with, or None for another message."""
        raw: Any = self.redis.hget(self._key("numbers"), message.id)
        return int(as_text(raw)) if raw is not None else None

    def _key(self, part: str) -> str:
        return f"{self.base}:{part}"
