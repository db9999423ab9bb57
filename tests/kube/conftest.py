"""Fixtures for the Kubernetes tier: the API emulator and official clients bound to it."""

from __future__ import annotations

import pytest
from kubernetes import client

from lab.kubeapi import KubeApi


def api_client(url: str) -> client.ApiClient:
    """An official client for one emulator URL (its own configuration, no globals)."""
    configuration = client.Configuration()
    configuration.host = url
    configuration.api_key = {"authorization": "Bearer emulator"}
    configuration.connection_pool_maxsize = 32  # a connection per watch
    return client.ApiClient(configuration)


@pytest.fixture
def kubeapi():
    api = KubeApi()
    url = api.listen("127.0.0.1", 0)
    try:
        yield api, url
    finally:
        api.close()
