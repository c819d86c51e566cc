"""The peer fetcher against local HTTPS peers: NodeInfo quirks, hostile answers, and every SSRF refusal."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core.fetching import Address, Fetcher, FetchError, refusal
from handlers.shared.nodeinfo import PeerSoftware, fetch_software, nodeinfo_link, parse_nodeinfo, read_peers
from tests.peers import Peer, PeerFleet, nodeinfo

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "nodeinfo"

NAMES = [
    "mastodon.example",
    "gts.example",
    "pixelfed.example",
    "fork.example",
    "akkoma.example",
    "fedired.example",
    "huge.example",
    "slow.example",
    "hang.example",
    "loop.example",
    "loop2.example",
    "private-redirect.example",
    "badjson.example",
    "html.example",
    "gone.example",
    "plain-http.example",
    "no-software.example",
    "evil.internal",
    "missing.example",
    "bad-port.example",
    "bad-ipv6.example",
    "nul-host.example",
    "bad-location.example",
    "odd-link.example",
]


def linking_to(href: str, document: dict[str, object] | None = None) -> Peer:
    """A peer whose discovery document links its NodeInfo (`document`) at `href`."""
    link = {"rel": "http://nodeinfo.diaspora.software/ns/schema/2.0", "href": href}
    return Peer(document, discovery={"links": [link]})


@pytest.fixture(scope="module")
def fleet() -> Iterator[PeerFleet]:
    fleet = PeerFleet(NAMES)
    fleet.peers.update(
        {
            "mastodon.example": Peer(json.loads((FIXTURES / "mastodon.json").read_text())),
            "gts.example": Peer(
                nodeinfo("gotosocial", "0.19.1+git-6574dc8"),
                discovery={
                    "links": [
                        {
                            "rel": "http://nodeinfo.diaspora.software/ns/schema/2.0",
                            "href": "https://gts.example/nodeinfo/2.0",
                        },
                        {
                            "rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
                            "href": "https://gts.example/nodeinfo/2.1",
                        },
                    ]
                },
            ),
            "pixelfed.example": Peer(
                json.loads((FIXTURES / "pixelfed.json").read_text()),
                discovery={
                    "links": [
                        {
                            "rel": "http://nodeinfo.diaspora.software/ns/schema/2.0",
                            "href": "https://pixelfed.example/api/nodeinfo/2.0.json",
                        }
                    ]
                },
            ),
            "fork.example": Peer(nodeinfo("mastodon", "4.3.0+glitch", metadata=[])),
            "akkoma.example": Peer(
                nodeinfo("akkoma", "2.2.50-724-gf917285b-develop+HyNET-prod", openRegistrations="FALSE", usage={})
            ),
            "fedired.example": Peer(nodeinfo("Fedired", "24.04-dev.2")),
            "huge.example": Peer(huge=True),
            "slow.example": Peer(slow_body=True),
            "hang.example": Peer(hang=True),
            "loop.example": Peer(redirect="https://loop2.example/.well-known/nodeinfo"),
            "loop2.example": Peer(redirect="https://loop.example/.well-known/nodeinfo"),
            "private-redirect.example": Peer(redirect="https://evil.internal/.well-known/nodeinfo"),
            "badjson.example": Peer(body=b'{"software": {"name": "mastodon", '),
            "html.example": Peer(body=b"<html>hello</html>", content_type="text/html"),
            "gone.example": Peer(status=410),
            "plain-http.example": Peer(
                discovery={
                    "links": [
                        {
                            "rel": "http://nodeinfo.diaspora.software/ns/schema/2.0",
                            "href": "http://plain-http.example/nodeinfo/2.0",
                        }
                    ]
                }
            ),
            "no-software.example": Peer({"version": "2.0", "metadata": {}}),
            "evil.internal": Peer(nodeinfo("mastodon", "4.6.5")),
            # URLs a peer hands out that urllib cannot take apart, or that no resolver should see.
            "bad-port.example": linking_to("https://bad-port.example:99999/nodeinfo/2.0"),
            "bad-ipv6.example": linking_to("https://[::1/nodeinfo/2.0"),
            "nul-host.example": linking_to("https://nul\u0000host.example/nodeinfo/2.0"),
            "bad-location.example": Peer(redirect="https://[::1/.well-known/nodeinfo"),
            "odd-link.example": linking_to(
                "https://odd-link.example/nodeinfo/2.0?served by=café", nodeinfo("mastodon", "4.4.0")
            ),
        }
    )
    fleet.start()
    yield fleet
    fleet.stop()


def fetcher(fleet: PeerFleet, **policy: object) -> Fetcher:
    return Fetcher(fleet.policy(**policy), resolver=fleet.resolver, ssl_context=fleet.client_context())


def software(fleet: PeerFleet, domain: str, **policy: object) -> PeerSoftware:
    return asyncio.run(fetch_software(fetcher(fleet, **policy), domain))


@pytest.mark.parametrize(
    ("domain", "name", "version"),
    [
        ("mastodon.example", "mastodon", "4.3.0-nightly.2024-04-30"),  # only 2.0 offered
        ("gts.example", "gotosocial", "0.19.1+git-6574dc8"),  # 2.1 preferred
        ("pixelfed.example", "pixelfed", "0.12.0"),  # href ending in .json
        ("fork.example", "mastodon", "4.3.0+glitch"),  # metadata as an array
        ("akkoma.example", "akkoma", "2.2.50-724-gf917285b-develop+HyNET-prod"),  # registrations as a string
        ("fedired.example", "fedired", "24.04-dev.2"),  # capitalized name
        ("odd-link.example", "mastodon", "4.4.0"),  # a space and an é in the link: escaped, not sent raw
    ],
)
def test_real_world_nodeinfo(fleet: PeerFleet, domain: str, name: str, version: str) -> None:
    assert (software(fleet, domain).name, software(fleet, domain).version) == (name, version)


def test_the_21_document_is_asked_for_when_offered(fleet: PeerFleet) -> None:
    software(fleet, "gts.example")
    assert ("gts.example", "/nodeinfo/2.1") in [(host, path) for host, path, _headers in fleet.requests]


def test_registrations_as_a_string_are_read(fleet: PeerFleet) -> None:
    assert software(fleet, "akkoma.example").open_registrations is False


def test_requests_identify_tocsin_and_carry_no_credentials(fleet: PeerFleet) -> None:
    software(fleet, "mastodon.example")
    headers = [headers for host, _path, headers in fleet.requests if host == "mastodon.example"]
    assert headers and all("Tocsin/0.1 (+https://social.example.org" in h["user-agent"] for h in headers)
    assert all("authorization" not in h and "cookie" not in h for h in headers)


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        ("huge.example", "too-large"),
        ("slow.example", "timeout"),
        ("hang.example", "timeout"),
        ("loop.example", "redirect-loop"),
        ("private-redirect.example", "refused-address"),
        ("badjson.example", "invalid-json"),
        ("html.example", "not-json"),
        ("gone.example", "gone"),
        ("plain-http.example", "not-https"),
        ("no-software.example", "no-software"),
        ("missing.example", "http-404"),
        ("unknown.example", "tls"),  # its certificate does not name it
        ("bad-port.example", "bad-url"),
        ("bad-ipv6.example", "bad-url"),
        ("nul-host.example", "bad-url"),
        ("bad-location.example", "bad-redirect"),
    ],
)
def test_hostile_and_broken_peers_are_unreadable_with_a_reason(fleet: PeerFleet, domain: str, reason: str) -> None:
    with pytest.raises(FetchError) as raised:
        # The hanging and dripping peers are cut at the deadline: a short one for them; room for the rest.
        software(fleet, domain, total_timeout=0.5 if reason == "timeout" else 1.5)
    assert raised.value.reason == reason


def test_a_peer_resolving_to_a_private_address_is_refused_before_any_connection(fleet: PeerFleet) -> None:
    before = len(fleet.requests)
    with pytest.raises(FetchError) as raised:
        software(fleet, "evil.internal")
    assert raised.value.reason == "refused-address"
    assert len(fleet.requests) == before


def test_an_address_that_is_no_ip_literal_is_refused_not_resolved_again(fleet: PeerFleet) -> None:
    """A resolver's answer with an IPv4 "scope" passes the range check, but the connection would have
    looked it up as a name: refused instead."""

    async def resolver(host: str, port: int) -> list[Address]:
        return [("127.0.0.1%1", fleet.port)]

    before = len(fleet.requests)
    with pytest.raises(FetchError) as raised:
        asyncio.run(
            Fetcher(fleet.policy(), resolver=resolver, ssl_context=fleet.client_context()).get_json(
                "https://mastodon.example/nodeinfo/2.0"
            )
        )
    assert raised.value.reason == "refused-address"
    assert len(fleet.requests) == before


def test_the_certificate_authorities_in_ssl_cert_file_are_the_ones_trusted(
    fleet: PeerFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_file = tmp_path / "fleet-ca.pem"
    fleet.ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    trusting = Fetcher(fleet.policy(), resolver=fleet.resolver)  # the default TLS context, as deployed
    assert asyncio.run(fetch_software(trusting, "mastodon.example")).name == "mastodon"
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(FetchError) as raised:
        asyncio.run(fetch_software(Fetcher(fleet.policy(), resolver=fleet.resolver), "mastodon.example"))
    assert raised.value.reason == "tls"


def test_loopback_is_refused_unless_allowed(fleet: PeerFleet) -> None:
    with pytest.raises(FetchError) as raised:
        software(fleet, "mastodon.example", allowed_private=())
    assert raised.value.reason == "refused-address"


def test_one_lookup_per_host_and_the_checked_address_is_used(fleet: PeerFleet) -> None:
    fleet.resolved.clear()
    software(fleet, "mastodon.example")
    assert fleet.resolved == ["mastodon.example", "mastodon.example"]  # discovery, then the document


@pytest.mark.slow  # twenty fetches to the deadline
def test_a_scan_of_slow_and_hanging_peers_completes_on_time(fleet: PeerFleet) -> None:
    domains = ["hang.example", "slow.example", "mastodon.example", "huge.example"] * 5
    scan = read_peers(fetcher(fleet, total_timeout=1.0), domains, concurrency=20)
    results = asyncio.run(asyncio.wait_for(scan, timeout=60))  # a guard against a hang, not a speed test
    assert sum(result.software is not None for result in results) == 5
    errors = {result.domain: result.error for result in results if result.error}
    assert errors == {"hang.example": "timeout", "slow.example": "timeout", "huge.example": "too-large"}


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "10.0.0.5",
        "172.16.3.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "192.0.2.10",  # documentation
        "::1",
        "::",
        "fd00::1",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",  # NAT64 (of 10.0.0.1): reserved
        "64:ff9b::5db8:d70e",  # NAT64 of a public address: reserved all the same
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2001:db8::1",
        "not-an-ip",
    ],
)
def test_refused_addresses(ip: str) -> None:
    assert refusal(ip, ()) is not None


@pytest.mark.parametrize("ip", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "::ffff:93.184.215.14"])
def test_public_addresses_pass(ip: str) -> None:
    assert refusal(ip, ()) is None


def test_allowed_private_networks_pass() -> None:
    allowed = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    assert refusal("10.0.0.5", allowed) is None
    assert refusal("::ffff:10.0.0.5", allowed) is None
    assert refusal("fd00::1", allowed) is None
    assert refusal("192.168.1.1", allowed) is not None


@pytest.mark.parametrize(
    ("discovery", "link"),
    [
        (json.loads((FIXTURES / "mastodon_wellknown.json").read_text()), "https://mastodon.social/nodeinfo/2.0"),
        (
            json.loads((FIXTURES / "gotosocial_wellknown.json").read_text()),
            "https://gts.superseriousbusiness.org/nodeinfo/2.1",
        ),
        (
            json.loads((FIXTURES / "pixelfed_wellknown.json").read_text()),
            "https://pixelfed.social/api/nodeinfo/2.0.json",
        ),
        ({"links": "nope"}, None),
        ([], None),
        ({"links": [{"rel": "http://nodeinfo.diaspora.software/ns/schema/1.0", "href": "https://x.example/1"}]}, None),
    ],
)
def test_discovery_documents(discovery: object, link: str | None) -> None:
    assert nodeinfo_link(discovery) == link


def test_shared_real_documents_parse() -> None:
    assert parse_nodeinfo(json.loads((FIXTURES / "mastodon.json").read_text())).name == "mastodon"
    assert parse_nodeinfo(json.loads((FIXTURES / "pixelfed.json").read_text())).version == "0.12.0"
