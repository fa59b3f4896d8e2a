"""Certificates and keys for a local control plane, the way envtest makes them.

One self-signed CA signs the kube-apiserver's serving certificate (for 127.0.0.1 and localhost) and client
certificates: an admin in ``system:masters`` and, on request, any other user (for RBAC tests). A separate RSA key
signs service-account tokens. Everything is written as PEM files into one directory, readable only by the owner.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from meshgen.errors import EnvironmentProblem

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # pragma: no cover - depends on the install
    x509 = None  # type: ignore[assignment]

VALIDITY = datetime.timedelta(days=7)
KEY_BITS = 2048


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Credentials:
    """Everything a control plane needs: CA, serving pair, admin client pair, service-account key pair."""

    ca: KeyPair
    serving: KeyPair
    admin: KeyPair
    service_account_key: Path
    service_account_public: Path


def _need_cryptography() -> None:
    if x509 is None:
        raise EnvironmentProblem(
            "the test environment needs the 'cryptography' package: pip install 'meshgen[testenv]'")


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


class Authority:
    """A CA that issues serving and client certificates into ``directory``."""

    def __init__(self, directory: Path) -> None:
        _need_cryptography()
        self.directory = directory
        self._key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        subject = _name("meshgen-testenv-ca")
        self._cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.pair = self._write("ca", self._cert, self._key)

    def _write(self, stem: str, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> KeyPair:
        pair = KeyPair(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(pair.key, key)
        return pair

    def issue(self, stem: str, common_name: str, organization: str | None = None, server: bool = False) -> KeyPair:
        """A certificate signed by this CA: for serving 127.0.0.1/localhost, or for a client user and group."""
        key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder().subject_name(_name(common_name, organization))
            .issuer_name(self._cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]), critical=False)
        return self._write(stem, builder.sign(self._key, hashes.SHA256()), key)


def create(directory: Path) -> tuple[Authority, Credentials]:
    """A fresh CA and every credential a control plane needs, written into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = Authority(directory)
    serving = ca.issue("apiserver", "kube-apiserver", server=True)
    admin = ca.issue("admin", "meshgen-admin", "system:masters")
    sa_key = _new_key()
    sa_private, sa_public = directory / "service-account.key", directory / "service-account.pub"
    _write_key(sa_private, sa_key)
    sa_public.write_bytes(sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))
    return ca, Credentials(ca.pair, serving, admin, sa_private, sa_public)
