"""More threads than requests' default pool: every worker keeps its own connection."""
from __future__ import annotations

import logging

from azlift import vhd
from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.upload.helpers import blob_target, converted_bytes, make_source
from azlift.upload.uploader import upload_image


def test_sixteen_threads_reuse_their_connections(azurite, tmp_path, caplog) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, count=120)
    target = blob_target(azurite, connections=18)
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
    with vhd.open_image(str(source.path)) as image:
        upload_image(image, target, threads=16, journal_dir=tmp_path / "state")
    assert target.client.download_blob().readall() == converted_bytes(source.path, tmp_path)
    adapters = target.client._client._client._pipeline._transport.session.adapters  # noqa: SLF001
    assert {adapter.poolmanager.connection_pool_kw["maxsize"] for adapter in adapters.values()} \
        == {18}
    # requests' default (10 per host) would discard connections: urllib3 says so
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]


def test_default_pool_is_left_alone(azurite) -> None:  # noqa: F811
    target = blob_target(azurite)  # as many threads as requests' own pool serves
    assert type(target.client._client._client._pipeline._transport).__name__ \
        == "RequestsTransport"  # noqa: SLF001
