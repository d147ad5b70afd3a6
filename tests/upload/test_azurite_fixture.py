"""The shared Azurite fixture starts, answers and hands out usable containers."""
from __future__ import annotations

from tests.support.azurite import azurite  # noqa: F401  (fixture)


def test_fixture_serves_page_blobs(azurite) -> None:  # noqa: F811
    container = azurite.new_container()
    blob = azurite.service_client().get_blob_client(container, "probe.vhd")
    blob.create_page_blob(size=1024)
    blob.upload_page(b"\x01" * 512, offset=512, length=512)
    assert blob.download_blob(offset=512, length=512).readall() == b"\x01" * 512
    assert blob.get_blob_properties().size == 1024
    assert azurite.new_container_name() != azurite.new_container_name()
    assert azurite.connection_string.startswith("DefaultEndpointsProtocol=http;")
