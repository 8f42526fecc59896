"""The client address: X-Forwarded-For is believed only when a trusted proxy sent it."""

import ipaddress

import pytest
from fastapi import FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from branchloans.app import create_app
from branchloans.config import Settings
from branchloans.observability.proxies import TrustedProxies
from tests.support import started_client

PROXY = ("127.0.0.1", 40000)
STRANGER = ("203.0.113.9", 40000)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The run's settings with the proxy on loopback trusted, as `make https` runs it."""
    return settings.model_copy(update={"trusted_proxies": (ipaddress.ip_network(PROXY[0]),)})


def whoami_app(settings: Settings) -> FastAPI:
    app = create_app(settings)

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, str | None]:
        return {"client": request.client.host if request.client else None}

    return app


async def client_seen(
    settings: Settings, connection: AsyncConnection, peer: tuple[str, int], forwarded: str
) -> str:
    async with started_client(whoami_app(settings), connection, client=peer) as http:
        response = await http.get("/whoami", headers={"X-Forwarded-For": forwarded})
    client: str = response.json()["client"]
    return client


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(
    settings: Settings, connection: AsyncConnection
) -> None:
    assert await client_seen(settings, connection, PROXY, "198.51.100.7") == "198.51.100.7"


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    settings: Settings, connection: AsyncConnection
) -> None:
    assert await client_seen(settings, connection, STRANGER, "198.51.100.7") == "203.0.113.9"


async def test_addresses_a_client_prepended_to_the_chain_are_not_believed(
    settings: Settings, connection: AsyncConnection
) -> None:
    seen = await client_seen(settings, connection, PROXY, "6.6.6.6, 198.51.100.7")

    assert seen == "198.51.100.7"


async def test_the_access_line_names_the_forwarded_client(
    json_settings: Settings, connection: AsyncConnection, capsys: pytest.CaptureFixture[str]
) -> None:
    async with started_client(whoami_app(json_settings), connection, client=PROXY) as http:
        capsys.readouterr()
        await http.get("/whoami", headers={"X-Forwarded-For": "198.51.100.7"})

    output = capsys.readouterr().out
    assert '"client":"198.51.100.7"' in output


def proxies(*networks: str) -> TrustedProxies:
    return TrustedProxies(ipaddress.ip_network(network) for network in networks)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.0.0.5", "198.51.100.7, 10.0.0.9", "198.51.100.7"),
        ("10.0.0.5", "10.0.0.8, 10.0.0.9", "10.0.0.8"),
        ("10.0.0.5", "198.51.100.7, not-an-ip, 10.0.0.9", "10.0.0.9"),
        ("10.0.0.5", "", "10.0.0.5"),
        ("192.0.2.1", "198.51.100.7", "192.0.2.1"),
        ("10.0.0.5", "2001:db8::1", "2001:db8::1"),
    ],
    ids=["through-two-proxies", "all-trusted", "malformed-hop", "empty", "untrusted", "ipv6"],
)
def test_the_chain_is_walked_from_the_right_past_trusted_proxies(
    peer: str, forwarded: str, expected: str
) -> None:
    assert proxies("10.0.0.0/8").client(peer, forwarded) == expected


def test_trusted_proxies_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1,::1")

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert [str(network) for network in settings.trusted_proxies] == [
        "10.0.0.0/8",
        "192.168.1.1/32",
        "::1/128",
    ]


def test_no_proxy_is_trusted_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUSTED_PROXIES", raising=False)

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    # Not even loopback: any local process could otherwise name the client in the logs.
    assert settings.trusted_proxies == ()
    assert TrustedProxies(settings.trusted_proxies).client("127.0.0.1", "1.2.3.4") == "127.0.0.1"


def test_an_empty_list_trusts_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "")

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.trusted_proxies == ()
    assert TrustedProxies(settings.trusted_proxies).client("127.0.0.1", "1.2.3.4") == "127.0.0.1"


def test_a_malformed_proxy_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8,proxy.internal")

    with pytest.raises(ValueError, match=r"proxy\.internal"):
        Settings(_env_file=None)  # type: ignore[call-arg]
