"""The managed-disk style target: an existing page blob of the exact size behind a write
SAS; no create, no metadata, resume state only in the local journal."""
from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone

import pytest
from azure.storage.blob import BlobSasPermissions, generate_blob_sas

from azlift import vhd
from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.upload.helpers import FAST_RETRY, blob_target, converted_bytes, make_source
from azlift.upload.errors import UploadInterrupted
from azlift.upload.stream import fixed_vhd_layout
from azlift.upload.target import BlobPageTarget
from azlift.upload.uploader import upload_image


def _write_sas_url(azurite, container: str, name: str) -> str:  # noqa: F811
    token = generate_blob_sas(azurite.account_name, container, name,
                              account_key=azurite.account_key,
                              permission=BlobSasPermissions(read=True, write=True),
                              expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    return azurite.blob_url(container, name) + "?" + token


def test_upload_and_resume_through_a_write_sas(azurite, tmp_path) -> None:  # noqa: F811
    source = make_source("vhdx", tmp_path, size=40 * 1024 * 1024, count=300, seed=5)
    with vhd.open_image(str(source.path)) as image:
        length = fixed_vhd_layout(image).blob_length
    disk = blob_target(azurite)
    disk.client.create_page_blob(size=length)  # what ARM creates for an Upload disk
    url = _write_sas_url(azurite, disk.client.container_name, disk.client.blob_name)
    state = tmp_path / "state"
    cancel = threading.Event()
    calls = {"n": 0}

    def stop_early(event) -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            cancel.set()

    target = BlobPageTarget.from_sas_url(url, retry=FAST_RETRY)
    assert target.identity == azurite.blob_url(disk.client.container_name, disk.client.blob_name)
    with vhd.open_image(str(source.path)) as image, pytest.raises(UploadInterrupted):
        upload_image(image, target, create=False, threads=2, cancel=cancel,
                     progress=stop_early, journal_dir=state)
    with vhd.open_image(str(source.path)) as image:
        summary = upload_image(image, BlobPageTarget.from_sas_url(url, retry=FAST_RETRY),
                               create=False, resume=True, threads=2, journal_dir=state)
    assert summary.resumed_bytes > 0
    assert disk.client.download_blob().readall() == converted_bytes(source.path, tmp_path)
    assert disk.properties().metadata == {}  # nothing but pages was written


def test_environment_is_read_per_request_only_when_it_configures_a_proxy(azurite, monkeypatch) -> None:  # noqa: F811
    from azlift.upload.target import transport_settings
    assert transport_settings({"PATH": "/bin"}) == {"use_env_settings": False}
    assert transport_settings({"HTTPS_PROXY": "http://proxy:3128"}) == {}
    assert transport_settings({"no_proxy": "localhost", "REQUESTS_CA_BUNDLE": "/a.pem"}) == {}
    assert transport_settings({"HTTPS_PROXY": ""}) == {"use_env_settings": False}
    assert transport_settings({"CURL_CA_BUNDLE": "/c.pem", "REQUESTS_CA_BUNDLE": "/r.pem"}) == {
        "use_env_settings": False, "connection_verify": "/r.pem"}
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")  # unused over http
    plain = blob_target(azurite)
    assert plain.lean  # no proxy to honour: the upload's requests bypass the SDK
    assert plain.exists() is False
    assert plain.client.exists() is False  # the SDK path, for what stays with it
    transport = plain.client._pipeline._transport
    assert transport.session.trust_env is False
    assert transport.connection_config.verify == "/nonexistent/ca.pem"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    proxied = blob_target(azurite)
    assert not proxied.lean  # proxies are the SDK's (requests') business
    assert proxied.exists() is False
    assert proxied.client._pipeline._transport.session.trust_env is True
