"""The codec endpoint the Temporal UI calls (api/routes_codec.py): a live admin or the codec
token decodes; drivers and strangers do not; only the UI's origin gets CORS headers."""

from __future__ import annotations

import base64

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from config.payload_codec import ENCODING, KEY_ID, new_key_entry
from config.settings import Settings
from config.temporal import data_converter
from db.engine import SessionFactory
from db.models import AuditLog
from tests.fixtures.auth import AuthService
from tests.identity.conftest import person

pytestmark = pytest.mark.timeout(120)

UI = "https://temporal-ui.example.com"
CODEC_TOKEN = "a-codec-token-0123456789abcdef0123456789"


@pytest.fixture
def identity_settings(identity_settings: Settings) -> Settings:
    return identity_settings.model_copy(
        update={
            "payload_keys": SecretStr(new_key_entry("k1")),
            "codec_token": SecretStr(CODEC_TOKEN),
            "temporal_ui_url": f"{UI}/namespaces/default",
        }
    )


def _wire(payloads: list[dict[str, object]]) -> dict[str, object]:
    return {"payloads": payloads}


async def test_codec_round_trip_for_admins_and_the_codec_token(
    api: httpx.AsyncClient,
    auth_service: AuthService,
    identity_settings: Settings,
    session_factory: SessionFactory,
) -> None:
    plain = data_converter(Settings(env="test")).payload_converter.to_payloads(
        [{"email": "jane@example.com"}]
    )
    body = _wire(
        [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in plain
        ]
    )
    token = {"Authorization": f"Bearer {CODEC_TOKEN}", "Origin": UI}
    encoded = await api.post("/api/codec/encode", json=body, headers=token)
    assert encoded.status_code == 200, encoded.text
    assert encoded.headers["access-control-allow-origin"] == UI
    sealed = encoded.json()["payloads"][0]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == ENCODING
    assert base64.b64decode(sealed["metadata"][KEY_ID]) == b"k1"
    assert b"jane@example.com" not in base64.b64decode(sealed["data"])

    admin = await person(auth_service, "codec-admin", role="admin")
    decoded = await api.post(
        "/api/codec/decode", json=encoded.json(), headers={**admin.headers, "X-Namespace": "x"}
    )
    assert decoded.status_code == 200, decoded.text
    assert decoded.json() == body
    async with session_factory() as db:
        rows = (
            (
                await db.execute(
                    select(AuditLog).where(
                        AuditLog.action == "codec.decode", AuditLog.actor == f"user:{admin.user_id}"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert len(rows) == 1

    # A driver, a wrong token and no token are all refused; so is another origin's CORS.
    driver = await person(auth_service, "codec-driver")
    assert (
        await api.post("/api/codec/decode", json=body, headers=driver.headers)
    ).status_code == 403
    wrong = {"Authorization": "Bearer nope", "Origin": "https://evil.example.com"}
    refused = await api.post("/api/codec/decode", json=body, headers=wrong)
    assert refused.status_code == 401
    assert "access-control-allow-origin" not in refused.headers
    assert (await api.post("/api/codec/decode", json=body)).status_code == 401


async def test_preflight_allows_only_the_ui_origin(api: httpx.AsyncClient) -> None:
    ok = await api.options(
        "/api/codec/decode",
        headers={"Origin": UI, "Access-Control-Request-Method": "POST"},
    )
    assert ok.headers["access-control-allow-origin"] == UI
    assert "x-namespace" in ok.headers["access-control-allow-headers"]
    other = await api.options("/api/codec/decode", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in other.headers
