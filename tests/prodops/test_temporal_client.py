"""How every process connects to Temporal (config/temporal.py): TLS, mTLS, server name, API key.

What is real here: the options are built from settings and files on disk and handed to the SDK's
own ``Client.connect``; an mTLS handshake with a private CA and a server name, through a
TLS-terminating proxy in front of the dev server (tests/prodops/tls_proxy.py: the dev server has no
TLS of its own), including the refusals (no client certificate, wrong name, unknown CA). What is
not: Temporal Cloud itself (the API key is checked as handed to the SDK, not against Cloud). The
plain (non-TLS) path is exercised for real by every other test.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr
from temporalio.service import TLSConfig

from config.payload_codec import EncryptionCodec, new_key_entry
from config.settings import Settings
from config.temporal import client_options, connect, tls_config


def _pem_pair(tmp: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_plain_by_default() -> None:
    assert tls_config(Settings(env="test")) is False
    assert client_options(Settings(env="test"))["api_key"] is None


def test_tls_with_system_roots_and_api_key_for_temporal_cloud() -> None:
    settings = Settings(env="test", temporal_api_key=SecretStr("cloud-key"))
    options = client_options(settings)
    assert options["tls"] is True  # an API key never travels in clear
    assert options["api_key"] == "cloud-key"
    assert tls_config(Settings(env="test", temporal_tls=True)) is True


def test_mtls_with_a_private_ca_and_a_server_name(tmp_path: Path) -> None:
    ca, _ = _pem_pair(tmp_path, "ca")
    cert, key = _pem_pair(tmp_path, "client")
    settings = Settings(
        env="test",
        temporal_tls_ca=ca,
        temporal_tls_cert=cert,
        temporal_tls_key=key,
        temporal_tls_server_name="temporal.internal",
    )
    tls = tls_config(settings)
    assert isinstance(tls, TLSConfig)
    assert tls.server_root_ca_cert == ca.read_bytes()
    assert tls.client_cert == cert.read_bytes()
    assert tls.client_private_key == key.read_bytes()
    assert tls.domain == "temporal.internal"


def test_cert_without_key_is_refused(tmp_path: Path) -> None:
    cert, _ = _pem_pair(tmp_path, "client")
    with pytest.raises(ValueError, match="go together"):
        Settings(env="test", temporal_tls_cert=cert)


async def test_connect_hands_the_options_to_the_sdk(tmp_path: Path) -> None:
    ca, _ = _pem_pair(tmp_path, "ca")
    cert, key = _pem_pair(tmp_path, "client")
    settings = Settings(
        env="test",
        temporal_address="temporal.example.com:7233",
        temporal_namespace="polaris.acct",
        temporal_tls_ca=ca,
        temporal_tls_cert=cert,
        temporal_tls_key=key,
        temporal_api_key=SecretStr("cloud-key"),
        payload_keys=SecretStr(new_key_entry("k1")),
    )
    client = await connect(settings, lazy=True)
    config = client.service_client.config
    assert config.target_host == "temporal.example.com:7233"
    assert isinstance(config.tls, TLSConfig)
    assert config.tls.client_cert == cert.read_bytes()
    assert config.api_key == "cloud-key"
    assert client.namespace == "polaris.acct"
    assert isinstance(client.data_converter.payload_codec, EncryptionCodec)


# --- A real TLS handshake: our client through a TLS-terminating proxy to the dev server -------


async def test_mtls_connection_through_a_real_handshake(
    tmp_path: Path, temporal_address: str
) -> None:
    from tests.prodops.tls_proxy import TlsProxy, make_pki

    pki = make_pki(tmp_path, "temporal.polaris.test")
    async with TlsProxy(pki, temporal_address, require_client_cert=True) as proxy:
        settings = Settings(
            env="test",
            temporal_address=proxy.address,  # 127.0.0.1:<port>: the name comes from the setting
            temporal_tls_ca=pki.ca,
            temporal_tls_cert=pki.client_cert,
            temporal_tls_key=pki.client_key,
            temporal_tls_server_name="temporal.polaris.test",
        )
        client = await connect(settings)
        assert await client.service_client.check_health()
        assert proxy.handshakes >= 1  # it went through the TLS proxy, not around it

        # Without the client certificate the proxy refuses the handshake.
        no_cert = settings.model_copy(update={"temporal_tls_cert": None, "temporal_tls_key": None})
        with pytest.raises(RuntimeError):
            await connect(no_cert)
        # A server name the certificate does not carry is refused by our client.
        wrong_name = settings.model_copy(update={"temporal_tls_server_name": "elsewhere.test"})
        with pytest.raises(RuntimeError, match="NotValidForName"):
            await connect(wrong_name)
        # Without our CA the server's certificate is not trusted.
        no_ca = settings.model_copy(update={"temporal_tls_ca": None})
        with pytest.raises(RuntimeError, match="UnknownIssuer"):
            await connect(no_ca)
