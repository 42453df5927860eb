"""An SDK older than the server keeps working when the server adds fields to its answers."""

from __future__ import annotations

import json

import httpx
import msgspec
import pytest

from fairshare_sdk._calls import datasets, search
from tests.sdk.conftest import QUERY, Agent, Deployment


def _newer(value: object) -> object:
    """The answer as a newer server might send it: a field we do not know in every object."""
    if isinstance(value, dict):
        return {**{k: _newer(v) for k, v in value.items()}, "added_later": {"x": [1, 2]}}
    if isinstance(value, list):
        return [_newer(v) for v in value]
    return value


def test_answers_with_unknown_fields_decode_to_what_the_sdk_knows(
    deployment: Deployment, agent: Agent
) -> None:
    headers = {"Authorization": f"Bearer {agent.key}"}
    with httpx.Client(base_url=deployment.base_url, headers=headers, timeout=60) as http:
        for call in (datasets(), search(QUERY, top_k=2, rerank=False)):
            answer = http.request(
                call.method, call.path, content=call.content, headers=call.headers
            )
            assert answer.status_code == 200, answer.text
            newer = json.dumps(_newer(answer.json())).encode()
            assert call.decode(newer) == call.decode(answer.content)


def test_known_fields_are_still_checked(deployment: Deployment, agent: Agent) -> None:
    headers = {"Authorization": f"Bearer {agent.key}"}
    call = datasets()
    with httpx.Client(base_url=deployment.base_url, headers=headers, timeout=60) as http:
        catalog = http.get(call.path).json()
    catalog[0]["licence"]["price_per_hit_micros"] = "free"
    with pytest.raises(msgspec.ValidationError, match="price_per_hit_micros"):
        call.decode(json.dumps(catalog).encode())
