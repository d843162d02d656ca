"""The Mosquitto test broker works: retained messages, restart on the same port, passwords."""

from __future__ import annotations

import uuid

import aiomqtt
import pytest

from tests.services.mosquitto import MosquittoBroker


def _client(broker: MosquittoBroker, username: str | None = None,
            password: str | None = None) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, identifier=f"t-{uuid.uuid4().hex}",
                          username=username, password=password)


async def _publish_retained(broker: MosquittoBroker, topic: str, payload: bytes,
                            username: str | None = None, password: str | None = None) -> None:
    async with _client(broker, username, password) as client:
        await client.publish(topic, payload, qos=1, retain=True)


async def _read_retained(broker: MosquittoBroker, topic: str,
                         username: str | None = None, password: str | None = None) -> bytes:
    async with _client(broker, username, password) as client:
        await client.subscribe(topic, qos=1)
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            return message.payload
    raise AssertionError("the subscription ended without a message")


async def test_retained_message_round_trip(mosquitto: MosquittoBroker) -> None:
    topic = f"test/{uuid.uuid4().hex}/available"
    await _publish_retained(mosquitto, topic, b"online")
    assert await _read_retained(mosquitto, topic) == b"online"


async def test_restart_on_the_same_port(mosquitto: MosquittoBroker) -> None:
    topic = f"test/{uuid.uuid4().hex}/state"
    port = mosquitto.port
    mosquitto.stop()
    assert not mosquitto.running
    with pytest.raises(aiomqtt.MqttError):
        await _publish_retained(mosquitto, topic, b"while-down")
    mosquitto.start()
    assert mosquitto.running
    assert mosquitto.port == port
    await _publish_retained(mosquitto, topic, b"after")
    assert await _read_retained(mosquitto, topic) == b"after"


async def test_password_broker_accepts_its_user_only(mosquitto_auth: MosquittoBroker) -> None:
    user, password = mosquitto_auth.username, mosquitto_auth.password
    assert user == "harbourwatch"
    assert password is not None
    topic = f"test/{uuid.uuid4().hex}/secure"
    await _publish_retained(mosquitto_auth, topic, b"ok", user, password)
    assert await _read_retained(mosquitto_auth, topic, user, password) == b"ok"
    with pytest.raises(aiomqtt.MqttCodeError):
        await _publish_retained(mosquitto_auth, topic, b"x", user, "wrong")
    with pytest.raises(aiomqtt.MqttCodeError):
        await _publish_retained(mosquitto_auth, topic, b"x")
