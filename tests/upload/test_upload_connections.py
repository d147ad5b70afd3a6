"""Connections: the lean request path keeps one per worker; the SDK path (behind a proxy)
sizes requests' pool to the threads."""
from __future__ import annotations

import logging
import time

from azlift import vhd
from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.support.tcp_relay import TcpRelay
from tests.upload.helpers import FAST_RETRY, WireCounter, blob_target, converted_bytes, make_source
from azlift.upload.target import BlobPageTarget
from azlift.upload.uploader import upload_image
from azlift.upload.verify import verify_upload


def test_sixteen_lean_workers_reuse_their_connections(azurite, tmp_path) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, count=120)
    container = azurite.new_container()
    counter = WireCounter()
    with TcpRelay((azurite.host, azurite.port)) as relay:
        target = BlobPageTarget(relay.url_for(azurite.blob_url(container, "disk.vhd")),
                                {"account_name": azurite.account_name,
                                 "account_key": azurite.account_key},
                                retry=FAST_RETRY, request_hook=counter)
        assert target.lean
        with vhd.open_image(str(source.path)) as image:
            summary = upload_image(image, target, threads=16, journal_dir=tmp_path / "state")
        connections = relay.connections
    direct = blob_target(azurite, container)
    assert direct.client.download_blob().readall() == converted_bytes(source.path, tmp_path)
    assert summary.requests == counter.put_pages > 50
    # the main thread's (exists, create, metadata) and at most one per worker thread
    assert connections <= 1 + 16


def test_close_ends_every_threads_connection(azurite, tmp_path) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, count=60)
    container = azurite.new_container()
    with TcpRelay((azurite.host, azurite.port)) as relay:
        target = BlobPageTarget(relay.url_for(azurite.blob_url(container, "disk.vhd")),
                                {"account_name": azurite.account_name,
                                 "account_key": azurite.account_key}, retry=FAST_RETRY)
        with vhd.open_image(str(source.path)) as image:
            upload_image(image, target, threads=8, journal_dir=tmp_path / "state")
            report = verify_upload(image, target, threads=8)  # reads on 8 more threads
        assert report.ok and report.data_bytes_checked > 0
        assert relay.connections > 2
        target.close()
        deadline = time.monotonic() + 10
        while relay.open_connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert relay.open_connections == 0, f"{relay.open_connections} of " \
            f"{relay.connections} connections left open"
        assert target.exists()  # a closed target opens a new connection when used again


def test_sdk_path_sizes_the_pool_to_sixteen_threads(azurite, tmp_path, caplog) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, count=120)
    # use_env_settings=True is what a configured proxy leads to: the SDK carries every request
    target = blob_target(azurite, connections=18, use_env_settings=True)
    assert not target.lean
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
