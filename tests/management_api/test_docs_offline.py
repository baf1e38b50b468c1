"""The docs page works offline: Swagger UI's assets are served by the platform (drf-spectacular-sidecar)."""

import re

import pytest


@pytest.mark.django_db
def test_the_docs_page_loads_only_local_assets(client):
    response = client.get("/v1/docs")
    assert response.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', response.content.decode())
    assert assets and all(asset.startswith("/static/") for asset in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset

