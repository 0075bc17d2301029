"""What the sync and async clients share: configuration, request bodies, answer decoding."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from fastarchrank import _ops
from fastarchrank._ops import Call, Item, MethodArg
from fastarchrank._transport import RetryPolicy
from fastarchrank.errors import from_response

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_URL = "http://127.0.0.1:8000"
# The same variables the `fastarchrank` CLI reads, so a search loop and the CLI find one service.
URL_ENV = "FASTARCHRANK_URL"
API_KEY_ENV = "FASTARCHRANK_API_KEY"


class ClientConfig:
    def __init__(
        self,
        url: str | None,
        api_key: str | None,
        timeout: float,
        retry: RetryPolicy | None,
        max_items_per_batch: int | None,
        poll_s: float,
    ) -> None:
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        # An explicit api_key (even "", meaning none) wins over the environment.
        self.api_key = api_key if api_key is not None else (os.environ.get(API_KEY_ENV) or None)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.max_items_per_batch = max_items_per_batch
        self.poll_s = poll_s

    def headers(self) -> dict[str, str]:
        h = {"Accept": "application/json, application/problem+json;q=0.9, */*;q=0.1"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h


def submission(
    space: str,
    dataset: str,
    methods: Sequence[MethodArg] | MethodArg,
    items: Sequence[Item],
    seed: int,
    options: Mapping[str, Any] | None,
    owner: str | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if isinstance(methods, str | Mapping):
        methods = [methods]
    body: dict[str, Any] = {
        "space": space,
        "dataset": dataset,
        "methods": [_ops.method_body(m) for m in methods],
        "seed": seed,
    }
    if options:
        body["options"] = {k: v for k, v in options.items() if v is not None}
    if owner:
        body["owner"] = owner
    return body, [_ops.item_body(it, space) for it in items]


def new_key() -> str:
    return uuid.uuid4().hex


def decode(call: Call, resp: httpx.Response) -> Any:
    if resp.status_code >= 400:
        raise from_response(resp)
    if call.decode == "bytes":
        return resp.content
    if call.decode == "text":
        return resp.text
    return resp.json()
