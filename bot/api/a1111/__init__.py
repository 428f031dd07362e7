"""The AUTOMATIC1111-compatible routes (``/sdapi/v1/...``) of ``proofroom serve``, so A1111
clients (``webuiapi``, chat front ends, editor plug-ins) reach the team's queue unchanged.

- ``POST /sdapi/v1/txt2img``, ``POST /sdapi/v1/img2img``: the job goes to the interactive
  queue through the chat's resolver and quotas (``bot.api.jobs``); the answer comes when it
  is done: ``images`` (base64 PNGs with their ``parameters`` chunk), ``parameters`` (the
  request) and ``info`` (a JSON string: seeds, infotexts...). A job still running after
  the wait timeout (``PROOFROOM_API_WAIT_TIMEOUT_S``) is answered 504 and keeps running;
  ``progress`` follows it and ``GET /v1/jobs/{id}`` returns it.
- ``GET /sdapi/v1/sd-models``, ``/loras``, ``/samplers``, ``/schedulers``: the catalog.
- ``GET|POST /sdapi/v1/options``: ``sd_model_checkpoint`` is the key's default model.
- ``GET /sdapi/v1/progress``: the key's latest job; ``POST /sdapi/v1/interrupt`` cancels it.
- ``GET /sdapi/v1/scripts``: none (clients ask before sending extension arguments).

A1111 keeps one model, one progress and one lock for the whole server; here options and
progress belong to the API key. Every route needs a key (``bot.api.auth``). Errors come in
A1111's shape (``errors``): 422 for a request that cannot be made, 429 over a quota, 404 for
another key's job.

Modules: ``routes`` (the Starlette handlers), ``errors`` (A1111's error shape), and the pure
mapping both ways: ``request`` (a txt2img/img2img body -> an ``ImagineRequest`` and its
images), ``names`` (A1111's names of checkpoints, samplers and LoRA tags), ``listing`` (the
catalog as A1111 lists it), ``response`` (a finished job as A1111 answers it).
"""

from bot.api.a1111.routes import a1111_routes

__all__ = ["a1111_routes"]
