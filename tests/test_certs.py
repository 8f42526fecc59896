"""The project's own CA: certificates that verify in a real TLS handshake, made once."""

import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from branchloans.certs import DEFAULT_NAMES, RENEW_BEFORE, SERVER_LIFETIME, ensure_certificates
from branchloans.cli import main


def _files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def _handshake(directory: Path, server_hostname: str) -> None:
    """Serve one TLS handshake with server.crt and complete it trusting only ca.crt."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(directory / "server.crt", directory / "server.key")
    client_context = ssl.create_default_context(cafile=directory / "ca.crt")
    errors: list[BaseException] = []

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept() -> None:
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError) as error:
                errors.append(error)

        thread = threading.Thread(target=accept)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                client_context.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                tls.sendall(b"x")
        finally:
            thread.join(timeout=5)


@pytest.mark.parametrize("name", DEFAULT_NAMES)
def test_the_server_certificate_verifies_against_the_ca(tmp_path: Path, name: str) -> None:
    ensure_certificates(tmp_path)

    _handshake(tmp_path, name)


def test_a_name_outside_the_certificate_fails_verification(tmp_path: Path) -> None:
    ensure_certificates(tmp_path)

    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tmp_path, "example.org")


def test_the_files_are_made_with_private_keys_readable_by_the_owner_only(tmp_path: Path) -> None:
    report = ensure_certificates(tmp_path / "certs")

    assert report.created_ca
    assert report.created_server
    modes = {path.name: path.stat().st_mode & 0o777 for path in report.paths.directory.iterdir()}
    assert modes == {"ca.crt": 0o644, "ca.key": 0o600, "server.crt": 0o644, "server.key": 0o600}


def test_the_ca_is_a_ca_and_the_server_certificate_is_not(tmp_path: Path) -> None:
    ensure_certificates(tmp_path)

    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "server.crt").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = server.not_valid_after_utc - server.not_valid_before_utc
    assert lifetime <= timedelta(days=398)


def test_a_second_run_keeps_valid_certificates(tmp_path: Path) -> None:
    ensure_certificates(tmp_path)
    before = _files(tmp_path)

    report = ensure_certificates(tmp_path)

    assert not report.created_ca
    assert not report.created_server
    assert _files(tmp_path) == before


def test_fewer_names_keep_the_ca_and_the_certificate(tmp_path: Path) -> None:
    ensure_certificates(tmp_path)

    report = ensure_certificates(tmp_path, ("localhost",))

    assert not report.created_ca
    assert not report.created_server


def test_a_name_the_ca_may_not_sign_for_gets_a_new_ca(tmp_path: Path) -> None:
    ensure_certificates(tmp_path, ("localhost",))
    ca_before = (tmp_path / "ca.crt").read_bytes()

    report = ensure_certificates(tmp_path, ("localhost", "api.branchloans.test"))

    assert report.created_ca
    assert report.created_server
    assert (tmp_path / "ca.crt").read_bytes() != ca_before
    _handshake(tmp_path, "api.branchloans.test")


def test_the_ca_cannot_vouch_for_names_it_was_not_made_for(tmp_path: Path) -> None:
    ensure_certificates(tmp_path)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((tmp_path / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    # What a stolen CA key could sign: a certificate for someone else's name.
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.org")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("example.org")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / "server.crt").write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    with pytest.raises(ssl.SSLCertVerificationError, match=r"permitted subtree violation"):
        _handshake(tmp_path, "example.org")


def test_the_ca_key_can_stay_out_of_the_servers_directory(tmp_path: Path) -> None:
    server_dir, ca_dir = tmp_path / "server", tmp_path / "ca"

    ensure_certificates(server_dir, ca_directory=ca_dir)
    report = ensure_certificates(server_dir, ca_directory=ca_dir)

    assert sorted(path.name for path in server_dir.iterdir()) == [
        "ca.crt",
        "server.crt",
        "server.key",
    ]
    assert sorted(path.name for path in ca_dir.iterdir()) == ["ca.crt", "ca.key"]
    assert (server_dir / "ca.crt").read_bytes() == (ca_dir / "ca.crt").read_bytes()
    assert not report.created_ca
    assert not report.created_server
    _handshake(server_dir, "branchloans.com")


def test_a_server_certificate_near_expiry_is_replaced(tmp_path: Path) -> None:
    ensure_certificates(tmp_path)
    later = datetime.now(UTC) + SERVER_LIFETIME - RENEW_BEFORE + timedelta(days=1)

    report = ensure_certificates(tmp_path, now=later)

    assert not report.created_ca
    assert report.created_server


def test_a_server_certificate_from_another_ca_is_replaced(tmp_path: Path) -> None:
    ensure_certificates(tmp_path)
    other = tmp_path / "other"
    ensure_certificates(other)
    for name in ("server.crt", "server.key"):
        (tmp_path / name).write_bytes((other / name).read_bytes())

    report = ensure_certificates(tmp_path)

    assert report.created_server
    _handshake(tmp_path, "branchloans.com")


def test_damaged_files_are_replaced(tmp_path: Path) -> None:
    ensure_certificates(tmp_path)
    (tmp_path / "ca.key").write_text("not a key")

    report = ensure_certificates(tmp_path)

    assert report.created_ca
    assert report.created_server
    _handshake(tmp_path, "localhost")


def test_the_certs_command_creates_then_keeps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "certs"

    command = ["certs", "--dir", str(directory), "--ca-dir", str(tmp_path / "ca")]

    assert main([*command, "--name", "api.internal"]) == 0
    created = capsys.readouterr().out
    assert main([*command, "--name", "api.internal"]) == 0
    kept = capsys.readouterr().out

    assert "created CA" in created
    assert "created server certificate" in created
    assert "branchloans.com, localhost, 127.0.0.1, api.internal" in created
    assert "kept CA" in kept
    assert "kept server certificate" in kept
    _handshake(directory, "api.internal")
