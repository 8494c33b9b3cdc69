"""The payload codec (config/payload_codec.py): round trip, key rotation, pass-through of
unencrypted payloads, and a real workflow on the dev server whose history is unreadable
without the key. The committed histories (tests/histories/) replay through the encrypting
converter unchanged: they were written without the codec."""

from __future__ import annotations

import base64
import dataclasses
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker

from config.payload_codec import (
    ENCODING,
    KEY_ID,
    EncryptionCodec,
    PayloadKeyError,
    new_key_entry,
    parse_keys,
)
from config.settings import Settings
from config.temporal import DATA_CONVERTER, connect, data_converter
from workflows.charging_session import ChargingSessionWorkflow

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
EMAIL = "jane.driver@example.com"


def _keys(*ids: str) -> list[tuple[str, bytes]]:
    return parse_keys(",".join(new_key_entry(i) for i in ids))


async def test_round_trip_seals_and_opens() -> None:
    codec = EncryptionCodec(_keys("k1"))
    plain = DATA_CONVERTER.payload_converter.to_payloads([{"email": EMAIL, "idTag": "TAG-1"}])
    sealed = await codec.encode(plain)
    assert sealed[0].metadata["encoding"] == ENCODING
    assert sealed[0].metadata[KEY_ID] == b"k1"
    assert EMAIL.encode() not in sealed[0].SerializeToString()
    assert await codec.decode(sealed) == plain


async def test_rotation_new_key_seals_old_key_still_opens() -> None:
    old = _keys("k1")
    new = _keys("k2")
    before = await EncryptionCodec(old).encode([Payload(data=b"before")])
    rotated = EncryptionCodec(new + old)  # the new key first: it seals; both open
    after = await rotated.encode([Payload(data=b"after")])
    assert after[0].metadata[KEY_ID] == b"k2"
    assert [p.data for p in await rotated.decode(before + after)] == [b"before", b"after"]
    # Without the old key, what it sealed does not open (and says which key is missing).
    with pytest.raises(PayloadKeyError, match="k1"):
        await EncryptionCodec(new).decode(before)
    # Same id, other key material: refused, not garbage.
    with pytest.raises(PayloadKeyError):
        await EncryptionCodec(_keys("k1")).decode(before)


async def test_unencrypted_payloads_pass_through() -> None:
    plain = DATA_CONVERTER.payload_converter.to_payloads(["hello", 3])
    assert await EncryptionCodec(_keys("k1")).decode(plain) == plain


def test_key_list_is_checked() -> None:
    good = base64.b64encode(b"x" * 32).decode()
    assert parse_keys(f" a:{good} , b:{good}") == [("a", b"x" * 32), ("b", b"x" * 32)]
    assert parse_keys(None) == []
    for bad in (
        f"a{good}",
        "a:not-base64!",
        f"a:{base64.b64encode(b'short').decode()}",
        f"a:{good},a:{good}",
        f"bad id:{good}",
    ):
        with pytest.raises(ValueError):
            parse_keys(bad)


def test_prod_temporal_clients_require_keys_unless_encryption_is_off() -> None:
    from config.startup import startup_refusal

    real = {
        "auth_internal_token": "a-real-internal-token-0123456789abcdef",
        "lago_api_key": "a-real-lago-key",
        "lago_webhook_secret": "a-real-webhook-secret",
    }
    bare = Settings(env="prod", **real)  # type: ignore[arg-type]
    for command in ("api", "worker", "gateway", "sessions"):
        assert "POLARIS_PAYLOAD_KEYS is required" in (startup_refusal(bare, command) or "")
    assert startup_refusal(bare, "migrate") is None  # not a Temporal client
    keyed = Settings(env="prod", payload_keys=new_key_entry("k1"), **real)  # type: ignore[arg-type]
    off = Settings(env="prod", payload_encryption="off", **real)  # type: ignore[arg-type]
    for settings in (keyed, off):
        assert startup_refusal(settings, "worker") is None


def test_data_converter_follows_the_settings() -> None:
    assert data_converter(Settings(env="test")) is DATA_CONVERTER
    keyed = data_converter(Settings(env="test", payload_keys=new_key_entry("k1")))
    assert isinstance(keyed.payload_codec, EncryptionCodec)
    assert keyed.payload_converter_class is DATA_CONVERTER.payload_converter_class
    off = Settings(env="test", payload_keys=new_key_entry("k1"), payload_encryption="off")
    assert data_converter(off) is DATA_CONVERTER


@activity.defn(name="codec_test_greet")
async def greet(email: str) -> str:
    return f"hello {email}"


@workflow.defn(name="CodecTestWorkflow", sandboxed=False)
class CodecTestWorkflow:
    @workflow.run
    async def run(self, email: str) -> str:
        return await workflow.execute_activity(
            greet, email, start_to_close_timeout=timedelta(seconds=30)
        )


async def test_a_real_history_is_unreadable_without_the_key(
    base_settings: Settings, temporal_client: Client, task_queue: str
) -> None:
    keys = new_key_entry("k1")
    settings = base_settings.model_copy(update={"payload_keys": keys})
    client = await connect(settings)  # the production path: every process connects like this
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[CodecTestWorkflow],
        activities=[greet],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        workflow_id = f"codec-{uuid.uuid4().hex[:8]}"
        result = await client.execute_workflow(
            CodecTestWorkflow.run, EMAIL, id=workflow_id, task_queue=task_queue
        )
    assert result == f"hello {EMAIL}"

    # Read the stored history with a client that has no key: nothing of the e-mail is in it.
    history = await temporal_client.get_workflow_handle(workflow_id).fetch_history()
    raw = history.to_json()
    assert "amFuZS5kcml2ZXJAZXhhbXBsZS5jb20" not in raw  # base64 of the e-mail's start
    assert EMAIL not in raw
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata["encoding"] == ENCODING
    # The keyless client cannot read the result either ...
    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the decode error
        await temporal_client.get_workflow_handle(workflow_id).result()
    # ... the keyed one can, and the history replays through the codec.
    assert await client.get_workflow_handle(workflow_id).result() == f"hello {EMAIL}"
    replayer = Replayer(
        workflows=[CodecTestWorkflow],
        data_converter=data_converter(settings),
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    replay = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert replay.replay_failure is None


@pytest.mark.parametrize("name", sorted(p.name for p in HISTORIES.glob("charging_session_v*.json")))
async def test_committed_histories_replay_through_the_codec(name: str) -> None:
    """Histories written before encryption (all of tests/histories/) still replay with it on."""
    history = WorkflowHistory.from_json(name, (HISTORIES / name).read_text())
    converter = dataclasses.replace(DATA_CONVERTER, payload_codec=EncryptionCodec(_keys("k1")))
    replayer = Replayer(workflows=[ChargingSessionWorkflow], data_converter=converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
