"""A small but real OpenAI-compatible chat-completions server over a transformers model, for tests.

    python -m tests.integration.openai_compat_server --model CHECKPOINT_DIR --port 8101

It generates with the model (chat template, sampling, seed, stop strings, usage counts, and vLLM's
`continue_final_message` / `add_generation_prompt` for continuing an assistant message) like a
`vllm serve` would, one request at a time, and adds a fault switch the openai backend's failover
tests need and no production server offers:

    POST /_faults {"fail": 2, "status": 500, "delay_s": 0}   the next 2 completions answer 500
    POST /_faults {"delay": 1, "delay_s": 5}                 the next completion first sleeps 5 s
    POST /_faults {"api_key": "sk-test"}                     completions need that bearer key (401 otherwise)
    POST /_faults {"refuse_continuation": true}       `continue_final_message` answers 400 (as OpenAI's API)
    GET  /_stats                      {"completions": n, "failed": m, "delayed": d, "rejected": r}

Endpoints: `POST /v1/chat/completions` (non-streaming), `GET /v1/models`, `GET /health`.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteriaList, StopStringCriteria


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send fields this server ignores
    model: str
    messages: list[ChatMessage]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    continue_final_message: bool = False  # vLLM / SGLang: continue the final assistant message
    add_generation_prompt: bool = True


class Faults(BaseModel):
    fail: int = 0  # answer the next `fail` completions with `status`
    status: int = 500
    delay: int = 0  # sleep `delay_s` before the next `delay` completions
    delay_s: float = 0.0
    api_key: str | None = None  # require `Authorization: Bearer <api_key>` on /v1/chat/completions
    refuse_continuation: bool = False  # answer 400 to continue_final_message


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def create_app(model_dir: str, served_name: str | None = None) -> FastAPI:
    name = served_name or model_dir
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    lock = threading.Lock()  # one generation at a time: torch already uses every core
    faults = Faults()
    stats = {"completions": 0, "failed": 0, "delayed": 0, "rejected": 0, "continued": 0}
    stop_criteria: dict[tuple[str, ...], StopStringCriteria] = {}
    app = FastAPI(title="openai-compatible test server")

    def complete(request: ChatRequest) -> dict[str, Any]:
        messages = [m.model_dump() for m in request.messages]
        if request.continue_final_message:
            # As vLLM: the template renders the final assistant message open, and the model writes on.
            prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=False,
                                                   continue_final_message=True)
        else:
            prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=request.add_generation_prompt,
                                                   tokenize=False)
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        stops = tuple([request.stop] if isinstance(request.stop, str) else (request.stop or []))
        options: dict[str, Any] = {
            "max_new_tokens": request.max_completion_tokens or request.max_tokens or 256,
            "do_sample": request.temperature > 0, "pad_token_id": tokenizer.eos_token_id}
        if request.temperature > 0:
            options.update(temperature=request.temperature, top_p=request.top_p)
        if stops:
            if stops not in stop_criteria:
                stop_criteria[stops] = StopStringCriteria(tokenizer, list(stops))
            options["stopping_criteria"] = StoppingCriteriaList([stop_criteria[stops]])
        with lock, torch.inference_mode():
            if request.seed is not None:
                torch.manual_seed(request.seed)
            output = model.generate(**inputs, **options)
        new = output[0, inputs["input_ids"].shape[1]:].tolist()
        if tokenizer.eos_token_id in new:
            new = new[: new.index(tokenizer.eos_token_id)]
            finish = "stop"
        else:
            finish = "length" if len(new) >= options["max_new_tokens"] else "stop"
        text = tokenizer.decode(new, skip_special_tokens=True)
        cut = [i for i in (text.find(s) for s in stops) if i >= 0]
        if cut:
            text, finish = text[: min(cut)], "stop"
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": name, "choices": [{"index": 0, "finish_reason": finish,
                                            "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": inputs["input_ids"].shape[1], "completion_tokens": len(new),
                          "total_tokens": inputs["input_ids"].shape[1] + len(new)}}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: ChatRequest, authorization: str | None = Header(None)) -> Any:
        if faults.api_key is not None and authorization != f"Bearer {faults.api_key}":
            stats["rejected"] += 1
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        if faults.delay > 0:
            faults.delay -= 1
            stats["delayed"] += 1
            await asyncio.sleep(faults.delay_s)
        if faults.fail > 0:
            faults.fail -= 1
            stats["failed"] += 1
            return _error(faults.status, f"injected failure (HTTP {faults.status})", "server_error")
        if request.model != name:
            stats["rejected"] += 1
            return _error(404, f"The model `{request.model}` does not exist.", "NotFoundError")
        if request.stream or request.n != 1:
            return _error(400, "this test server supports only stream=false and n=1")
        if request.continue_final_message:
            if faults.refuse_continuation:
                stats["rejected"] += 1
                return _error(400, "Unrecognized request argument supplied: continue_final_message")
            if request.add_generation_prompt or request.messages[-1].role != "assistant":
                return _error(400, "continue_final_message needs add_generation_prompt=false and a final "
                                   "assistant message")
            stats["continued"] += 1
        result = await asyncio.to_thread(complete, request)
        stats["completions"] += 1
        return result

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "test"}]}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/_faults")
    async def set_faults(new: Faults) -> dict[str, Any]:
        nonlocal faults
        faults = new
        return new.model_dump()

    @app.get("/_stats")
    async def get_stats() -> dict[str, int]:
        return stats

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="local checkpoint directory")
    parser.add_argument("--served-model-name", default=None, help="model id to answer to (default: --model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(str(Path(args.model)), args.served_model_name)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
