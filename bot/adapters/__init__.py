"""Chat platforms behind the :class:`~bot.ports.ChatAdapter` port: ``shell`` (the terminal),
``slack`` and ``discord``, each a sub-package with its adapter, app, settings and CLI, plus
``images`` (fitting an upload under a platform's limit). Nothing is imported here, so a
process pays only for the platform it runs."""
