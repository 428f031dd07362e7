"""``proofroom serve``: the one HTTP service (ASGI on uvicorn). ``app.py`` (the routes),
``server.py`` (uvicorn, the socket, stopping), ``service.py`` (the two put together, with
Slack), ``slack.py`` (Slack HTTP mode on a thread pool), ``health.py`` (``/readyz``),
``metrics.py`` (``/metrics``), ``state.py`` (what they read from Redis), ``cli.py``."""
