"""Slack HTTP mode as a route of the ASGI service: the body and headers of a request become a
``BoltRequest`` (as ``slack_bolt.adapter.asgi`` builds it), and the synchronous Bolt ``App``
(``bot.adapters.slack.app.build_app``) dispatches it on a pool of threads.

Bolt's own ASGI adapter calls ``App.dispatch`` on the event loop itself, so with a
synchronous ``App`` the server handles one request at a time: the signature check, the
middleware's Redis call and the listener's ``ack()`` of every request wait for those before
it. Here the loop only reads requests and writes responses; ``dispatch`` (about 1 ms of CPU:
the listener acknowledges and hands its work to the app's work pool) runs on
``DISPATCH_THREADS`` threads, so a burst of slash commands is accepted and acknowledged
side by side.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App, BoltResponse
from slack_bolt.request import BoltRequest
from starlette.requests import Request
from starlette.responses import Response

# Threads that run Bolt's dispatch: the request's signature check, the re-delivery check in
# Redis and the listener up to its ack. Enough to overlap their Redis round trips; dispatch
# is mostly Python, so more threads would only take the GIL from the event loop that reads
# and answers the requests.
DISPATCH_THREADS = 8


class SlackEndpoint:
    """``POST {path}``: Slack's requests (slash commands, events, interactivity) for ``app``.
    :meth:`close` once the server has stopped."""

    def __init__(self, app: App, *, path: str, threads: int = DISPATCH_THREADS) -> None:
        self.app = app
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="slack-dispatch")

    async def handle(self, request: Request) -> Response:
        """Dispatch one request to the Bolt app off the event loop; Bolt's answer back."""
        bolt_request = BoltRequest(
            body=(await request.body()).decode("utf-8", errors="replace"),  # bad: 401
            query=request.url.query,
            headers={name: value for name, value in request.headers.items()},
        )
        loop = asyncio.get_running_loop()
        answer: BoltResponse = await loop.run_in_executor(
            self._pool, self.app.dispatch, bolt_request
        )
        response = Response(content=answer.body.encode("utf-8"), status_code=answer.status)
        for name, values in answer.headers.items():
            if name.lower() == "content-length":
                continue  # Starlette sets it for the body it sends
            for value in values:
                response.headers.append(name, value)
        return response

    def close(self) -> None:
        """Stop the dispatch threads (after the server stopped: none is running then)."""
        self._pool.shutdown(wait=True)
