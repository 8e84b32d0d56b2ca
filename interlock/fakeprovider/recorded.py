"""Recorded responses for benchmarks: static files plus an nginx.conf that serves them.

nginx is a near-zero-cost upstream, so a benchmark measures the gateway, not the
fake. The bodies come from the same renderers as the live fake (fixed ids and
timestamp, so the files are byte-for-byte reproducible).

nginx answers POST to a static file with 405; `error_page 405 =200 $uri` turns
that into an internal GET redirect that serves the file with status 200.
Stream vs non-stream is chosen by the `x-fake-stream: 1` request header.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from . import anthropic_api, openai_api
from .model import Turn
from .reply import build_reply

RECORDED_CREATED = 1_700_000_000
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-5"
PROMPT = "Say hello to the benchmark harness."
NONSTREAM_TOKENS = 75  # gives a ~1 KB chat.completion body
STREAM_TOKENS = 20  # 20 content chunks

OPENAI_CHAT = "openai_chat.json"
OPENAI_CHAT_STREAM = "openai_chat_stream.sse"
ANTHROPIC_MESSAGES = "anthropic_messages.json"
ANTHROPIC_MESSAGES_STREAM = "anthropic_messages_stream.sse"
STREAM_HEADER = "x-fake-stream"


def _turn(model: str, stream: bool) -> Turn:
    return Turn(model=model, stream=stream, input_text=PROMPT, prompt=PROMPT, include_usage=stream)


def render_recorded_responses() -> dict[str, bytes]:
    """File name -> exact bytes. Pure."""
    oa, oa_s = _turn(OPENAI_MODEL, False), _turn(OPENAI_MODEL, True)
    an, an_s = _turn(ANTHROPIC_MODEL, False), _turn(ANTHROPIC_MODEL, True)
    big, small = build_reply(oa, NONSTREAM_TOKENS), build_reply(oa, STREAM_TOKENS)
    rid = "recorded0000000000000001"
    return {
        OPENAI_CHAT: orjson.dumps(openai_api.completion(oa, big, rid, RECORDED_CREATED)),
        OPENAI_CHAT_STREAM: b"".join(openai_api.stream(oa_s, small, rid, RECORDED_CREATED)),
        ANTHROPIC_MESSAGES: orjson.dumps(anthropic_api.message(an, big, rid, RECORDED_CREATED)),
        ANTHROPIC_MESSAGES_STREAM: b"".join(anthropic_api.stream(an_s, small, rid, RECORDED_CREATED)),
    }


def write_recorded_responses(directory: str | Path) -> dict[str, Path]:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, body in render_recorded_responses().items():
        path = out / name
        path.write_bytes(body)
        written[name] = path
    return written


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_conf(directory: str | Path, port: int, *, user: str | None = None, workers: str = "auto") -> str:
    """nginx.conf text serving the recorded files on 127.0.0.1:`port`.

    Run with `nginx -p <prefix> -c <conf> -e stderr -g 'daemon off;'`; pid and temp
    files go under the prefix. Pass `user="root"` when nginx starts as root and the
    files are not world-readable (workers otherwise drop to `nobody`).
    """
    root = _quote(str(Path(directory).resolve()))
    user_line = f"user {user};\n" if user else ""
    return f"""{user_line}worker_processes {workers};
pid nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    types {{ application/json json; text/event-stream sse; }}
    default_type application/octet-stream;
    map $http_{STREAM_HEADER.replace("-", "_")} $openai_chat {{ default /{OPENAI_CHAT}; ~^(1|true|yes)$ /{OPENAI_CHAT_STREAM}; }}
    map $http_{STREAM_HEADER.replace("-", "_")} $anthropic_messages {{ default /{ANTHROPIC_MESSAGES}; ~^(1|true|yes)$ /{ANTHROPIC_MESSAGES_STREAM}; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        client_max_body_size 64m;
        location = /v1/chat/completions {{ rewrite ^ $openai_chat last; }}
        location = /v1/messages {{ rewrite ^ $anthropic_messages last; }}
        location ~ ^/[a-z_]+\\.(json|sse)$ {{
            internal;
            # POST to a static file is a 405 in nginx; re-serve it as an internal GET with 200.
            error_page 405 =200 $uri;
        }}
    }}
}}
"""
