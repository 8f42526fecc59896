"""A local certificate authority and the TLS certificate nginx serves with it.

`ensure_certificates` makes both on first start and keeps them afterwards, so the stack needs
no openssl step: trust `ca.crt` once (`curl --cacert ca.crt`, or the system/browser store) and
every certificate it signs is verified. The CA may only sign for the names it was made for (an
X.509 name constraint), so trusting it trusts nothing else even if its key leaked; and its key
can live in a directory of its own, away from the server that uses the certificate.
"""

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("branchloans.com", "localhost", "127.0.0.1")
CA_LIFETIME = timedelta(days=3650)
# Browsers refuse server certificates valid for more than 398 days.
SERVER_LIFETIME = timedelta(days=397)
# A certificate this close to expiry is replaced rather than kept.
RENEW_BEFORE = timedelta(days=30)
# Clocks of client machines may lag the one that signs.
BACKDATE = timedelta(minutes=5)

Name = x509.DNSName | x509.IPAddress


@dataclass(frozen=True)
class CertificatePaths:
    """Where the server certificate (with a copy of the CA certificate clients trust) and the
    CA's own certificate and key live."""

    directory: Path
    ca_directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_own_cert(self) -> Path:
        return self.ca_directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.ca_directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"


@dataclass(frozen=True)
class CertificateReport:
    """What `ensure_certificates` did."""

    paths: CertificatePaths
    created_ca: bool
    created_server: bool


def _subject_name(name: str) -> Name:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, mode: int) -> None:
    # Written beside the target and renamed, so a reader never sees half a file.
    partial = path.with_name(f".{path.name}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    os.chmod(partial, mode)
    partial.replace(path)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(path, pem, 0o600)


def _write_cert(path: Path, certificate: x509.Certificate) -> None:
    _write(path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def _load(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if key.public_key() != certificate.public_key():
        return None
    return certificate, key


def _fresh(certificate: x509.Certificate, now: datetime) -> bool:
    return certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc - RENEW_BEFORE


def _permitted(names: list[Name]) -> list[Name]:
    return [
        x509.IPAddress(ipaddress.ip_network(name.value))
        if isinstance(name, x509.IPAddress)
        else name
        for name in names
    ]


def _is_ca_for(certificate: x509.Certificate, names: list[Name]) -> bool:
    try:
        basic = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        constraints = certificate.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return False
    permitted = set(constraints.value.permitted_subtrees or ())
    return basic.value.ca and set(_permitted(names)) <= permitted


def _covered_names(certificate: x509.Certificate) -> set[Name]:
    try:
        alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return set(alternative.value)


def _issued_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _build_ca(
    key: ec.EllipticCurvePrivateKey, names: list[Name], now: datetime
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Branch Loans"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Branch Loans local CA"),
        ]
    )
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.NameConstraints(permitted_subtrees=_permitted(names), excluded_subtrees=None),
            critical=True,
        )
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def _build_server(
    key: ec.EllipticCurvePrivateKey,
    names: list[Name],
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> x509.Certificate:
    common_name = str(names[0].value)
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + SERVER_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def ensure_certificates(
    directory: Path,
    names: tuple[str, ...] = DEFAULT_NAMES,
    now: datetime | None = None,
    ca_directory: Path | None = None,
) -> CertificateReport:
    """Make the CA and a server certificate for `names` unless usable ones exist.

    The server's `server.crt`, `server.key` and a copy of `ca.crt` go to `directory`; the CA's
    `ca.key` and `ca.crt` to `ca_directory` (default: `directory` too). An existing CA is kept
    while it is a CA allowed to sign for every name, matches its key and is not near expiry. An
    existing server certificate is kept while that CA signed it, it covers every name, matches
    its key and is not near expiry; otherwise a new one is signed (and a new CA made if needed).
    """
    if not names:
        raise ValueError("at least one name is needed for the server certificate")
    now = now or datetime.now(UTC)
    paths = CertificatePaths(directory, ca_directory or directory)
    for folder in (paths.directory, paths.ca_directory):
        folder.mkdir(parents=True, exist_ok=True)
    wanted = [_subject_name(name) for name in names]

    ca = _load(paths.ca_own_cert, paths.ca_key)
    created_ca = ca is None or not (_is_ca_for(ca[0], wanted) and _fresh(ca[0], now))
    if ca is None or created_ca:
        ca_key = _new_key()
        ca = (_build_ca(ca_key, wanted, now), ca_key)
        _write_key(paths.ca_key, ca_key)
        _write_cert(paths.ca_own_cert, ca[0])
    ca_cert, ca_key = ca
    if paths.ca_cert != paths.ca_own_cert:
        _write_cert(paths.ca_cert, ca_cert)

    server = _load(paths.server_cert, paths.server_key)
    usable = (
        server is not None
        and not created_ca
        and _issued_by(server[0], ca_cert)
        and set(wanted) <= _covered_names(server[0])
        and _fresh(server[0], now)
    )
    if not usable:
        server_key = _new_key()
        _write_key(paths.server_key, server_key)
        _write_cert(paths.server_cert, _build_server(server_key, wanted, ca_cert, ca_key, now))
    return CertificateReport(paths=paths, created_ca=created_ca, created_server=not usable)
