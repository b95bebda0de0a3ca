"""The openai backend: generation by any server speaking `POST /v1/chat/completions`.

Point the simulator at one or more running `vllm serve`, SGLang or `transformers serve` servers
(`ZS_OPENAI_BASE_URLS=http://gpu1:8000,http://gpu2:8000`), which is how the paper's code ran its
simulator. This process then holds no model: it decides, caches, parses and renders, and the
servers generate.

Load spreading: each generation goes to the server with the fewest requests in flight from this
process (ties rotate), or strictly round robin with `ZS_OPENAI_BALANCE=round_robin`.

Failover: a connection error, a timeout (`ZS_OPENAI_TIMEOUT_S` per attempt), a 5xx or a 429
moves the generation to the next server, up to `ZS_OPENAI_RETRIES` extra attempts; a server that
refused a connection or timed out is tried last for `DOWN_FOR_S` seconds, so one dead server
costs one failed attempt, not one per request. A 4xx other than 429 is the request's fault and
fails at once, without a retry. Attempts back off (capped exponential with jitter) only when they
come back to a server already tried for this generation.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from zerosearch_core.errors import BackendError
from zerosearch_simulator.backends.base import Backend, Generation, GenerationRequest, cut_at_stop

if TYPE_CHECKING:
    from zerosearch_simulator.settings import Settings

logger = logging.getLogger(__name__)

Balance = Literal["least_inflight", "round_robin"]

#: How long a server that refused a connection or timed out is moved to the back of the line.
DOWN_FOR_S = 10.0
#: Deadline of the start-up and health probes (`/v1/models`, `/health`).
PROBE_TIMEOUT_S = 5.0
_RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))


class _AttemptFailed(Exception):
    """One attempt failed in a way another attempt (on another server) may fix."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


@dataclass
class _Server:
    url: str  # base URL without a trailing slash and without /v1
    in_flight: int = 0
    down_until: float = 0.0  # monotonic time; a server marked down is tried after the others


def _base_url(url: str) -> str:
    """`http://h:8000`, `http://h:8000/` and `http://h:8000/v1` all name the same server."""
    url = url.strip().rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _error_message(response: httpx.Response) -> str:
    """The server's own words: OpenAI `{"error": {"message"}}`, FastAPI `{"detail"}` or the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
        if "detail" in body:
            return str(body["detail"])[:300]
        if "message" in body:
            return str(body["message"])[:300]
    return str(body)[:300]


def _setting(settings: Settings, name: str, default: Any) -> Any:
    value = getattr(settings, name, None)
    return default if value is None else value


class OpenAIBackend(Backend):
    """Generation through OpenAI-compatible chat-completions servers, spread and failed over.

    Keyword arguments override the matching `ZS_OPENAI_*` settings (tests, embedding). `transport`
    replaces httpx's network transport (an in-process app, a mock).
    """

    def __init__(self, settings: Settings, *, base_urls: list[str] | None = None, model: str | None = None,
                 api_key: str | None = None, timeout_s: float | None = None, retries: int | None = None,
                 balance: Balance | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
        urls = [_base_url(u) for u in (base_urls or settings.openai_base_url_list) if u.strip()]
        if not urls:
            raise BackendError("the openai backend needs ZS_OPENAI_BASE_URLS (comma-separated server URLs, "
                               "e.g. http://127.0.0.1:8001)", recoverable=False)
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise BackendError(f"ZS_OPENAI_BASE_URLS: {url!r} must start with http:// or https://",
                                   recoverable=False)
        self.servers = [_Server(url) for url in dict.fromkeys(urls)]  # duplicates would skew the spread
        self.model = model or settings.model  # None: the first model the servers list
        key = api_key or _setting(settings, "openai_api_key", None)
        self.api_key: str | None = key.get_secret_value() if hasattr(key, "get_secret_value") else key
        self.timeout_s = float(timeout_s or _setting(settings, "openai_timeout_s", 60.0))
        self.retries = int(retries if retries is not None else _setting(settings, "openai_retries", 2))
        self.balance: Balance = balance or _setting(settings, "openai_balance", "least_inflight")
        if self.balance not in ("least_inflight", "round_robin"):
            raise BackendError(f"ZS_OPENAI_BALANCE={self.balance!r}: use least_inflight or round_robin",
                               recoverable=False)
        if self.timeout_s <= 0 or self.retries < 0:
            raise BackendError("ZS_OPENAI_TIMEOUT_S must be > 0 and ZS_OPENAI_RETRIES >= 0", recoverable=False)
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._turn = itertools.count()
        self._backoff = wait_exponential_jitter(initial=0.1, max=2.0, jitter=0.1)
        self._closing = False
        self.model_id = self.model or "openai"
        #: Whether the servers continue an assistant message (`continue_final_message`); off after a refusal.
        self.continues = True

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        headers = {"User-Agent": "zerosearch-simulator"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.AsyncClient(
            headers=headers, transport=self._transport, timeout=httpx.Timeout(self.timeout_s),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128))
        listed = await self._list_models()
        if self.model is None:
            if not listed:
                await self._http.aclose()
                raise BackendError(
                    f"none of ZS_OPENAI_BASE_URLS ({', '.join(s.url for s in self.servers)}) listed a model at "
                    "/v1/models: start the servers first, or set ZS_MODEL to the served model name",
                    recoverable=False)
            self.model = listed[0]
        elif listed and self.model not in listed:
            logger.warning("ZS_MODEL=%r is not among the models the servers list (%s)", self.model,
                           ", ".join(listed))
        self.model_id = self.model
        logger.info("openai backend: model %s on %s (%s, %.0f s per attempt, %d retries)", self.model,
                    ", ".join(s.url for s in self.servers), self.balance, self.timeout_s, self.retries)

    async def _list_models(self) -> list[str]:
        """Model ids listed by the first server that answers `/v1/models`; [] when none does."""
        assert self._http is not None
        for server in self.servers:
            try:
                response = await self._send("GET", server.url + "/v1/models", timeout=PROBE_TIMEOUT_S)
                response.raise_for_status()
                return [str(m["id"]) for m in response.json().get("data", []) if "id" in m]
            except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
                logger.info("%s/v1/models: %s", server.url, exc)
        return []

    async def check_health(self) -> bool:
        """Ready while at least one server answers `/health` or `/v1/models`."""
        if self._http is None or self._closing:
            return False
        for server in sorted(self.servers, key=lambda s: s.down_until):
            for path in ("/health", "/v1/models"):
                try:
                    response = await self._send("GET", server.url + path, timeout=PROBE_TIMEOUT_S)
                except httpx.HTTPError:
                    break  # unreachable: the other path will not answer either
                if response.status_code == 200:
                    return True
        return False

    async def shutdown(self) -> None:
        self._closing = True
        if self._http is not None:
            await self._http.aclose()

    @property
    def queue_depth(self) -> int:
        return sum(s.in_flight for s in self.servers)

    # requests ----------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> Generation:
        if self._http is None or self._closing:
            raise BackendError("the openai backend is not started" if not self._closing else "shutting down",
                               recoverable=True)
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in request.messages],
                                "max_tokens": request.max_new_tokens, "temperature": request.temperature,
                                "top_p": request.top_p, "n": 1, "stream": False}
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = list(request.stop)
        if not (request.continuation and self.continues):
            return await self._complete(body, request, continued=not request.continuation)
        # vLLM's and SGLang's chat API continue a final assistant message with these two fields.
        prefilled = body | {"messages": body["messages"] + [{"role": "assistant", "content": request.continuation}],
                            "continue_final_message": True, "add_generation_prompt": False}
        try:
            return await self._complete(prefilled, request, continued=True)
        except BackendError as exc:
            if exc.recoverable:
                raise
            # A server that refuses the fields (OpenAI's own API, older servers): a fresh reply instead, whose
            # documents the engine merges with those already written. If that one is accepted, the refusal was
            # about continuing, and later continuations are not tried again.
            generation = await self._complete(body, request, continued=False)
            self.continues = False
            logger.warning("the servers refused to continue an assistant message (%s); generating fresh replies "
                           "instead", exc)
            return generation

    async def _complete(self, body: dict[str, Any], request: GenerationRequest, *, continued: bool) -> Generation:
        tried: list[_Server] = []
        failures: list[str] = []
        started = time.perf_counter()
        retrying = AsyncRetrying(stop=stop_after_attempt(self.retries + 1),
                                 retry=retry_if_exception_type(_AttemptFailed),
                                 wait=lambda state: self._wait(state, tried), reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    server = self._pick(tried)
                    tried.append(server)
                    try:
                        data = await self._attempt(server, body)
                    except _AttemptFailed as exc:
                        failures.append(str(exc))
                        logger.warning("chat completion failed on %s (%s); %s", exc.url, exc.reason,
                                       "trying again" if attempt.retry_state.attempt_number <= self.retries
                                       else "giving up")
                        raise
        except _AttemptFailed:
            raise BackendError(f"no OpenAI-compatible server answered after {len(failures)} attempts: "
                               + "; ".join(failures), recoverable=True) from None
        seconds = time.perf_counter() - started
        # No on_batch call: batches form on the servers, out of sight (their own metrics show them).
        generation = self._parse(data, request, seconds)
        generation.continued = continued
        return generation

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request, sent once more on a fresh connection when a pooled keep-alive connection turns out to
        have been closed by the server (some close it after a 5xx without saying so)."""
        assert self._http is not None
        try:
            return await self._http.request(method, url, **kwargs)
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
            logger.debug("%s %s: %r; once more on a fresh connection", method, url, exc)
            return await self._http.request(method, url, **kwargs)

    def _pick(self, tried: list[_Server]) -> _Server:
        """Least in flight (or the next in turn) among servers that are up and not yet tried."""
        now = time.monotonic()
        turn = next(self._turn)
        order = self.servers[turn % len(self.servers):] + self.servers[:turn % len(self.servers)]

        def rank(server: _Server) -> tuple[int, int, int]:
            load = server.in_flight if self.balance == "least_inflight" else 0
            return (tried.count(server), int(server.down_until > now), load)

        return min(order, key=rank)  # min keeps the first of equals: rotation breaks ties

    def _wait(self, state: RetryCallState, tried: list[_Server]) -> float:
        # Moving on to an untried server needs no pause; coming back to one does.
        untried = len({id(s) for s in tried}) < len(self.servers)
        return 0.0 if untried else self._backoff(state)

    async def _attempt(self, server: _Server, body: dict[str, Any]) -> dict[str, Any]:
        assert self._http is not None
        server.in_flight += 1
        try:
            # httpx's timeout bounds each read; wait_for bounds the whole attempt.
            response = await asyncio.wait_for(
                self._send("POST", server.url + "/v1/chat/completions", json=body), timeout=self.timeout_s)
        except (httpx.TimeoutException, asyncio.TimeoutError):
            server.down_until = time.monotonic() + DOWN_FOR_S
            raise _AttemptFailed(server.url, f"timed out after {self.timeout_s:g} s") from None
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.ConnectError):  # nobody listens there: try it last for a while
                server.down_until = time.monotonic() + DOWN_FOR_S
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise _AttemptFailed(server.url, reason) from None
        finally:
            server.in_flight -= 1
        if response.status_code in _RETRY_STATUSES:
            raise _AttemptFailed(server.url, f"HTTP {response.status_code}: {_error_message(response)}")
        if response.status_code >= 400:
            # The request itself is wrong (unknown model, prompt too long): another server would say the same.
            raise BackendError(f"{server.url} refused the chat completion (HTTP {response.status_code}): "
                               f"{_error_message(response)}", recoverable=False)
        server.down_until = 0.0
        try:
            data = response.json()
            if not isinstance(data, dict) or not data.get("choices"):
                raise ValueError("no choices")
        except ValueError as exc:
            raise _AttemptFailed(server.url, f"not a chat completion ({exc}): {response.text[:200]!r}") from None
        return data

    def _parse(self, data: dict[str, Any], request: GenerationRequest, seconds: float) -> Generation:
        choice = data["choices"][0]
        message = choice.get("message") or {}
        text = message.get("content") or choice.get("text") or ""
        usage = data.get("usage") or {}
        return Generation(
            text=cut_at_stop(text, request.stop), prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or len(text.split())),
            backend_seconds=seconds, batch_size=1,
            extra={"finish_reason": choice.get("finish_reason"), "server_model": data.get("model")})
