"""nginx from the deploy template against slow and hostile clients, on the real stack."""

# ruff: noqa: F811  (the tests take the `stack` fixture imported below as their argument)

import socket
import ssl

import httpx

from tests.deploy.test_stack import Stack, stack  # noqa: F401  (a stack for this module)

SLOW_CLIENTS = 600  # more than the 2 x 256 connections nginx's workers held before
HEADER_TIMEOUT = 10  # client_header_timeout in the template


def _slow_https_client(stack: Stack) -> ssl.SSLSocket:
    """A TLS connection that has sent half a request's headers, and then nothing."""
    context = ssl.create_default_context(cafile=stack.ca)
    raw = socket.create_connection(("127.0.0.1", stack.https_port), timeout=10)
    connection = context.wrap_socket(raw, server_hostname="localhost")
    connection.sendall(b"GET /liveness HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
    return connection


def test_hundreds_of_slow_header_clients_leave_real_https_requests_answered(
    stack: Stack,
) -> None:
    slow = [_slow_https_client(stack) for _ in range(SLOW_CLIENTS)]
    try:
        with stack.https() as client:
            responses = [client.get("/api/loans", params={"limit": 1}) for _ in range(5)]
    finally:
        for connection in slow:
            connection.close()

    assert [response.status_code for response in responses] == [200] * 5


def test_nginx_closes_a_client_whose_headers_stall(stack: Stack) -> None:
    connection = _slow_https_client(stack)
    connection.settimeout(HEADER_TIMEOUT + 10)  # else recv raises TimeoutError: a failure
    try:
        received = connection.recv(4096)
    except (ConnectionResetError, ssl.SSLError):
        received = b""
    finally:
        connection.close()

    assert received == b""  # closed, not answered


def test_a_made_up_host_on_plain_http_is_redirected_to_our_own_name(stack: Stack) -> None:
    response = httpx.get(
        f"http://127.0.0.1:{stack.http_port}/api/loans?limit=1",
        headers={"Host": "evil.example"},
    )

    assert response.status_code == 308
    assert response.headers["Location"] == (
        f"https://branchloans.com:{stack.https_port}/api/loans?limit=1"
    )
