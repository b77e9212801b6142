"""The gateway as openai-python sees it: completions, streams, models, errors, bugs.md cases."""

from __future__ import annotations

import json
import re

import openai
import pytest
from conftest import PERSONA, ROOT, UPSTREAM_KEY

QUESTION = [{"role": "user", "content": "What is justice?"}]


def persona_header(slug: str) -> str:
    text = (ROOT / "personas" / f"{slug}.md").read_text(encoding="utf-8")
    return text.split("+++")[1]


def upstream_model(slug: str) -> str:
    match = re.search(r'^upstream_model\s*=\s*"([^"]+)"', persona_header(slug), re.M)
    assert match, f"personas/{slug}.md names its upstream_model"
    return match.group(1)


def persona_ids() -> list[str]:
    ids = []
    for path in sorted((ROOT / "personas").glob("*.md")):
        if path.name.startswith("_"):
            continue
        match = re.search(
            r'^id\s*=\s*"([^"]+)"', path.read_text(encoding="utf-8").split("+++")[1], re.M
        )
        if match:
            ids.append(f"zaguanai/{match.group(1)}")
    return ids


SHARED_START = " ".join((ROOT / "personas" / "_shared.md").read_text(encoding="utf-8").split()[:8])


def chunk_event(delta: dict, finish_reason: str | None = None) -> str:
    """One chat.completion.chunk event from the upstream `up-model`, framed as SSE."""
    payload = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def test_non_streaming_completion(gw, client, request_id):
    raw = client.chat.completions.with_raw_response.create(
        model=PERSONA, messages=QUESTION, extra_headers={"x-request-id": request_id}
    )
    completion = raw.parse()
    assert raw.headers["x-request-id"] == request_id
    assert completion._request_id == request_id
    assert completion.model == PERSONA
    assert completion.choices[0].message.content.startswith("You asked: What is justice?")
    assert completion.choices[0].finish_reason == "stop"

    seen = gw.the_upstream_request(request_id)
    assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert seen["json"]["model"] == upstream_model("socrates")
    system = seen["json"]["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith(SHARED_START)
    assert "Socrates" in system["content"]
    assert seen["json"]["messages"][1:] == QUESTION


def test_streaming_completion(client):
    stream = client.chat.completions.create(
        model=PERSONA, messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert len(chunks) > 3
    assert all(chunk.model == PERSONA for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("You asked: What is justice?")
    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens > 0


def test_extra_body_and_defaults_reach_the_upstream(gw, client, request_id):
    client.chat.completions.create(
        model="socrates",
        messages=QUESTION,
        temperature=0.25,
        extra_headers={"x-request-id": request_id},
        extra_body={"x_vendor": {"keep": [1, "two", None]}},
    )
    seen = gw.the_upstream_request(request_id)["json"]
    assert seen["x_vendor"] == {"keep": [1, "two", None]}
    assert seen["temperature"] == 0.25
    defaults = persona_header("socrates").split("[defaults]")[1]
    match = re.search(r"^max_tokens\s*=\s*(\d+)", defaults, re.M)
    if match:
        assert seen["max_tokens"] == int(match.group(1))


def test_models_list_and_retrieve(gw, client):
    listed = [model.id for model in client.models.list()]
    for persona in persona_ids():
        assert persona in listed
    model = client.models.retrieve(PERSONA)
    assert model.id == PERSONA
    assert model.owned_by == "zaguanai"
    with gw.get("/models") as response:
        assert response.status == 200
        body = response.read().decode()
    assert SHARED_START not in body


@pytest.mark.parametrize("model", ["zaguanai/nobody", "openai/gpt-4o"])
def test_unknown_model_is_not_found(client, model):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model=model, messages=QUESTION)
    assert caught.value.code == "model_not_found"
    assert caught.value.request_id


def test_empty_messages_is_bad_request(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=PERSONA, messages=[])
    assert caught.value.param == "messages"


def test_upstream_401_is_authentication_error(client):
    body = (
        '{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error",'
        '"param":null,"code":"invalid_api_key"}}'
    )
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(
            model=PERSONA,
            messages=QUESTION,
            stream=True,
            extra_body={"x_stub": {"status": 401, "body": body}},
        )
    assert caught.value.code == "invalid_api_key"
    assert UPSTREAM_KEY not in str(caught.value.body)


def test_upstream_429_is_rate_limit_error(client):
    body = '{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}'
    stub = {
        "status": 429,
        "headers": {"retry-after": "20", "retry-after-ms": "20000"},
        "body": body,
    }
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model=PERSONA, messages=QUESTION, extra_body={"x_stub": stub}
        )
    assert caught.value.response.headers["retry-after-ms"] == "20000"


def test_upstream_html_502_is_internal_server_error(client):
    html = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
    stub = {"status": 502, "headers": {"content-type": "text/html"}, "body": html}
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model=PERSONA, messages=QUESTION, extra_body={"x_stub": stub}
        )
    assert caught.value.status_code == 502
    assert "<html" not in str(caught.value.body)


def test_b10_error_mid_stream_raises_api_error(client):
    error = (
        'data: {"error":{"object":"error","message":"Requested token count exceeds the model\'s maximum '
        'context length","type":"BadRequestError","param":null,"code":400}}\n\n'
    )
    stub = {"reads": [chunk_event({"content": "Hi"}), error, "data: [DONE]\n\n"], "delay_ms": 20}
    seen = []
    with pytest.raises(openai.APIError, match="maximum context length"):
        for chunk in client.chat.completions.create(
            model=PERSONA,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_body={"x_stub": stub},
        ):
            seen.append(chunk)
    assert [c.choices[0].delta.content for c in seen] == ["Hi"]
    assert seen[0].model == PERSONA


def test_b17_tool_call_deltas_accumulate(client):
    first_call = {"index": 0, "id": "call_1", "type": "function"}
    first_call["function"] = {"name": "get_weather", "arguments": ""}
    reads = [
        chunk_event({"role": "assistant", "content": None, "tool_calls": [first_call]}),
        chunk_event({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Par'}}]}),
        chunk_event({"tool_calls": [{"index": 0, "function": {"arguments": 'is"}'}}]}),
        chunk_event({}, "tool_calls"),
        "data: [DONE]\n\n",
    ]
    stream = client.chat.completions.create(
        model=PERSONA,
        messages=[{"role": "user", "content": "weather?"}],
        stream=True,
        extra_body={"x_stub": {"reads": reads, "delay_ms": 10}},
    )
    arguments = ""
    for chunk in stream:
        assert chunk.model == PERSONA
        for call in chunk.choices[0].delta.tool_calls or []:
            assert call.index == 0
            arguments += call.function.arguments or ""
    assert json.loads(arguments) == {"city": "Paris"}


def test_request_id_generated_on_errors(gw):
    with gw.get("/nothing-here") as response:
        assert response.status == 404
        generated = response.headers["x-request-id"]
        assert generated and len(generated) <= 128
        assert response.headers["content-type"].startswith("application/json")
        assert "error" in json.loads(response.read())


def test_a_wrong_client_key_is_authentication_error(gw):
    client = gw.client(api_key="sk-not-a-key-of-this-gateway")
    with pytest.raises(openai.AuthenticationError) as caught:
        client.models.list()
    assert caught.value.code == "invalid_api_key"
