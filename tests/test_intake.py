from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core import defaults
from bot.core.config import Settings
from bot.ops.embedded_redis import free_port
from bot.ops.web import create_app
from tests.helpers import fixture, make_settings, sign


@pytest.fixture
def client(tmp_path: Path, redis_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tmp_path, redis_url))) as test_client:
        yield test_client


def deliver(client: TestClient, body: bytes, signature: str | None = None) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "application/json"}
    headers["X-Hub-Signature"] = sign(body) if signature is None else signature
    response = client.post("/webhooks/mastodon", content=body, headers=headers)
    return response.status_code, response.json()


def stored_events(connection: redis.Redis) -> list[dict[str, object]]:
    return [json.loads(fields[b"event"]) for _id, fields in connection.xrange(defaults.EVENT_STREAM)]


def test_signed_event_is_queued_once_with_a_drain_job(client: TestClient, connection: redis.Redis) -> None:
    body = json.dumps(fixture("report.created")).encode()
    assert deliver(client, body) == (202, {"status": "queued"})
    events = stored_events(connection)
    assert [event["event"] for event in events] == ["report.created"]
    assert connection.llen("rq:queue:" + defaults.QUEUE_EVENTS) == 1


def test_same_body_sixteen_times_is_queued_once(client: TestClient, connection: redis.Redis) -> None:
    body = json.dumps(fixture("report.created")).encode()
    codes = [deliver(client, body)[0] for _ in range(16)]
    assert codes == [202] + [200] * 15
    assert len(stored_events(connection)) == 1
    (dedupe_key,) = connection.keys(defaults.DEDUPE_PREFIX + "*")
    assert connection.ttl(dedupe_key) > 3 * 86400  # Mastodon retries for about two days


@pytest.mark.parametrize(
    "signature",
    [
        "",  # missing
        "sha256=" + "0" * 64,  # wrong
        "sha1=0123456789abcdef0123456789abcdef01234567",  # other algorithm
        sign(b"another body"),  # signature of different bytes
        sign(json.dumps(fixture("report.created")).encode(), secret="not-the-secret-at-all"),
    ],
)
def test_bad_signature_is_401_and_stores_nothing(client: TestClient, connection: redis.Redis, signature: str) -> None:
    body = json.dumps(fixture("report.created")).encode()
    status, reply = deliver(client, body, signature)
    assert status == 401
    assert "X-Hub-Signature" in str(reply["detail"])
    assert stored_events(connection) == []


LATIN_1 = st.characters(max_codepoint=255)
HEADER_VALUES = st.one_of(
    st.text(LATIN_1, max_size=80),
    st.text(LATIN_1, max_size=80).map(lambda rest: "sha256=" + rest),  # past the prefix check, to the comparison
    st.text(LATIN_1, min_size=1, max_size=2).map(lambda odd: sign(b"{}")[:-2] + odd),  # a near miss
)


@pytest.mark.slow  # fuzzing, an app started per case
@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(signature=HEADER_VALUES)
def test_any_signature_header_is_401_never_a_server_error(tmp_path: Path, redis_url: str, signature: str) -> None:
    """A header is any latin-1 text a client sends (the ASGI server hands over its bytes): a non-ASCII
    one used to reach hmac.compare_digest as str, which raises, and the delivery got a 500."""
    with TestClient(create_app(make_settings(tmp_path, redis_url)), raise_server_exceptions=False) as client:
        response = client.post(
            "/webhooks/mastodon", content=b"{}", headers={"X-Hub-Signature": signature.encode("latin-1")}
        )
    assert response.status_code == 401, (response.status_code, signature)


def test_signature_is_checked_over_raw_bytes_not_reserialized_json(client: TestClient) -> None:
    compact = json.dumps(fixture("report.created"), separators=(",", ":")).encode()
    pretty = json.dumps(fixture("report.created"), indent=2).encode()
    assert deliver(client, pretty, sign(compact))[0] == 401
    assert deliver(client, compact, sign(compact))[0] == 202


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not JSON"),
        (b"\xff\xfe", "body is not JSON"),
        (b"[1, 2]", "body is not a JSON object"),
        (b'{"object": {}}', "no event name"),
        (b'{"event": "report.created"}', "no event object"),
        (b'{"event": "report.created", "object": "x"}', "no event object"),
    ],
)
def test_malformed_event_is_400(client: TestClient, connection: redis.Redis, body: bytes, reason: str) -> None:
    assert deliver(client, body) == (400, {"status": "rejected", "detail": reason})
    assert stored_events(connection) == []


def test_oversized_body_is_413(client: TestClient, connection: redis.Redis) -> None:
    body = b'{"event": "report.created", "object": {"comment": "' + b"x" * (1024 * 1024) + b'"}}'
    response = client.post("/webhooks/mastodon", content=body, headers={"X-Hub-Signature": sign(body)})
    assert response.status_code == 413
    assert stored_events(connection) == []


def test_unknown_event_is_acknowledged_counted_and_not_queued(client: TestClient, connection: redis.Redis) -> None:
    body = json.dumps({"event": "domain_block.created", "created_at": "2026-01-01T00:00:00Z", "object": {}}).encode()
    assert deliver(client, body) == (200, {"status": "ignored", "detail": "unknown event"})
    assert connection.hget(defaults.IGNORED_EVENTS, "domain_block.created") == b"1"
    assert stored_events(connection) == []


def test_personal_data_is_reduced_before_storing(client: TestClient, connection: redis.Redis) -> None:
    for name in ("report.created", "report.updated", "account.created", "account.approved", "account.updated"):
        assert deliver(client, json.dumps(fixture(name)).encode())[0] == 202
    stored = json.dumps(stored_events(connection))
    raw_payloads = "".join(
        (Path(__file__).parent / "fixtures" / "mastodon" / f).read_text()
        for f in ("report.created.json", "account.created.json")
    )
    assert "@mail.example.com" in raw_payloads and "198.51.100.7" in raw_payloads  # the fixtures carry PII
    for secret_value in ("@mail.example.com", "198.51.100.", "2001:db8", '"ips"', "invite_request"):
        assert secret_value not in stored
    account = stored_events(connection)[2]["object"]
    assert account["email_domain"] == fixture("account.created")["object"]["email"].rsplit("@", 1)[1]
    assert len(account["ip_prefix_hash"]) == 16


def test_redis_down_is_503_so_mastodon_retries(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings: Settings = make_settings(tmp_path, dead)
    with TestClient(create_app(settings)) as client:
        status, reply = deliver(client, json.dumps(fixture("report.created")).encode())
        assert status == 503
        assert reply["status"] == "unavailable"
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").json() == {"status": "alive"}


def test_readyz_wants_a_recent_worker(client: TestClient, connection: redis.Redis) -> None:
    from rq import SimpleWorker

    from bot.pipeline.queue import queue

    assert client.get("/readyz").json() == {"status": "unready", "redis": "ok", "workers": 0}
    worker = SimpleWorker([queue(defaults.QUEUE_EVENTS, connection)], connection=connection)
    worker.register_birth()
    worker.heartbeat()
    assert client.get("/readyz").json() == {"status": "ready", "redis": "ok", "workers": 1}
    worker.register_death()


def test_outbox_page_is_only_for_this_machine(client: TestClient) -> None:
    # TestClient's peer is "testclient", not a loopback address; a proxy's forwarded request is remote too.
    assert client.get("/outbox").status_code == 404
    assert client.get("/outbox", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 404


@pytest.mark.parametrize("proxy_header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
def test_outbox_page_refuses_proxied_requests_from_loopback(tmp_path: Path, redis_url: str, proxy_header: str) -> None:
    app = create_app(make_settings(tmp_path, redis_url))
    with TestClient(app, client=("127.0.0.1", 50000)) as local:
        assert local.get("/outbox").status_code == 200
        assert local.get("/outbox", headers={proxy_header: "for=198.51.100.7"}).status_code == 404


@pytest.mark.parametrize(
    "obj",
    [
        {"id": "1", "ip": "192.0.2.1\u0000", "email": 42, "ips": "not a list"},
        {"id": "2", "ip": ["192.0.2.1"], "email": "no-at-sign", "invite_request": {"text": "x"}},
        {"id": "3", "ip": None, "email": None, "account": None},
        {"id": "4", "ip": "2001:db8::1", "email": "someone@EXAMPLE.org "},
    ],
)
def test_odd_account_shapes_are_queued_not_a_server_error(
    client: TestClient, connection: redis.Redis, obj: dict[str, object]
) -> None:
    body = json.dumps({"event": "account.created", "created_at": "2026-11-20T12:00:00.000Z", "object": obj}).encode()
    assert deliver(client, body)[0] == 202
    [stored] = stored_events(connection)
    assert "ip" not in stored["object"] and "email" not in stored["object"]  # type: ignore[operator]


@pytest.mark.parametrize(
    "obj", [{"id": "1", "account": None, "target_account": "x"}, {"id": "2", "account": {"ip": 7}, "comment": None}]
)
def test_odd_report_shapes_are_queued_not_a_server_error(
    client: TestClient, connection: redis.Redis, obj: dict[str, object]
) -> None:
    body = json.dumps({"event": "report.created", "object": obj}).encode()
    assert deliver(client, body)[0] == 202
