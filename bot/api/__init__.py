"""The HTTP API for applications, served by ``proofroom serve`` (``docs/api.md``).

- ``keys``: API keys (stored hashed), each mapped to a user for quotas and the ledger, and
  optionally to a review channel; ``cli``: ``proofroom api-key create|list|revoke``.
- ``auth``: the key of a request (``Authorization: Bearer``, or HTTP Basic's password).
- ``jobs``: queue, follow, cancel and fetch a key's jobs through the chat's own resolver,
  quotas, queue, store and job event stream; ``votes``: approve and reject like a reaction.
- ``status``: where a job is, as the API shows it, read from and written to its record.
- ``limits``: the body-size limit and base64 images checked like chat attachments.
- ``native``: the native routes (``/v1/...``) and ``openapi``: their OpenAPI document.
- ``a1111``: the AUTOMATIC1111-compatible routes (``/sdapi/v1/...``), a sub-package.
- ``routes``: all of them together, for ``bot.serve``.
"""
