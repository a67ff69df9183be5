"""The ASGI app: routes of both APIs, the key, the upload limit, errors in OpenAI's shape, and
`serve`, which loads the model once and runs uvicorn."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from whisper_cli.serve.handling import Settings
from whisper_cli.serve.schemas import ApiError

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from whisper_cli.protocol import SpeechModel


class _TooLarge(Exception):
    pass


class UploadLimit:
    """413 for a body over `limit` bytes: by its Content-Length, or as it arrives."""

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"").decode() or "0"
        if length.isdigit() and int(length) > self.limit:
            await _send_error(send, self._error())
            return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise self._error()
            return message

        await self.app(scope, counted, send)

    def _error(self) -> ApiError:
        megabytes = self.limit / (1 << 20)
        return ApiError(413, f"the upload is over the limit of {megabytes:g} MB", code="too_large")


async def _send_error(send: Any, error: ApiError) -> None:
    import json

    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _api_error(request: Request, error: Exception) -> Response:
    from starlette.responses import JSONResponse

    assert isinstance(error, ApiError)
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _http_error(request: Request, error: Exception) -> Response:
    from starlette.exceptions import HTTPException

    assert isinstance(error, HTTPException)
    message = {404: f"no route {request.method} {request.url.path}"}.get(
        error.status_code, str(error.detail)
    )
    return await _api_error(request, ApiError(error.status_code, message))


async def _server_error(request: Request, error: Exception) -> Response:
    from whisper_cli.errors import first_line

    return await _api_error(request, ApiError(500, f"internal error: {first_line(error)}"))


async def health(request: Request) -> Response:
    from starlette.responses import JSONResponse

    worker = request.app.state.worker
    settings = request.app.state.settings
    return JSONResponse(
        {
            "status": "ok",
            "model": settings.model_name,
            "in_work": worker.in_work,
            "queue_limit": settings.queue_limit,
        }
    )


def create_app(model: SpeechModel, settings: Settings) -> Starlette:
    """The app serving `model`; its worker thread starts now and stops with the app."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.routing import Route

    from whisper_cli.serve import deepinfra, openai
    from whisper_cli.serve.worker import Worker

    worker = Worker(model, settings.queue_limit, settings.pack)
    webhooks = deepinfra.Webhooks(settings.webhook_timeout)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        worker.stop()
        webhooks.close()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", openai.models, methods=["GET"]),
        Route("/v1/audio/transcriptions", openai.transcriptions, methods=["POST"]),
        Route("/v1/audio/translations", openai.translations, methods=["POST"]),
        Route("/v1/inference/{model:path}", deepinfra.inference, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(UploadLimit, limit=settings.max_upload_bytes)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    app.state.worker = worker
    app.state.webhooks = webhooks
    app.state.settings = settings
    return app


def serve(model: SpeechModel, settings: Settings, host: str, port: int) -> None:
    """Run the server until Ctrl-C: requests in work are answered, then it stops."""
    import uvicorn

    app = create_app(model, settings)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=30)
