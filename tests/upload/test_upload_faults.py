"""Through a proxy that answers 503 ServerBusy and resets connections mid-request, the
upload still completes byte-identical; a service that stays busy fails with exit 4."""
from __future__ import annotations

import pytest

from azlift import vhd
from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.support.fault_proxy import FaultProxy
from tests.upload.helpers import FAST_RETRY, WireCounter, blob_target, converted_bytes, make_source
from azlift.upload.errors import TransientServiceError
from azlift.upload.target import BlobPageTarget, RetrySettings
from azlift.upload.uploader import upload_image


def _proxied_target(azurite, proxy: FaultProxy, container: str, retry: RetrySettings,  # noqa: F811
                    counter: WireCounter | None = None) -> BlobPageTarget:
    url = proxy.url_for(azurite.blob_url(container, "disk.vhd"))
    return BlobPageTarget(url, {"account_name": azurite.account_name,
                                "account_key": azurite.account_key},
                          retry=retry, request_hook=counter)


def test_busy_and_resets_are_retried_and_blob_is_identical(azurite, tmp_path) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, count=120, seed=11)
    container = azurite.new_container()
    with FaultProxy((azurite.host, azurite.port), busy_share=0.25, reset_share=0.2,
                    max_busy=12, max_resets=8, seed=5) as proxy:
        counter = WireCounter()
        target = _proxied_target(azurite, proxy, container, FAST_RETRY, counter)
        with vhd.open_image(str(source.path)) as image:
            summary = upload_image(image, target, threads=6, journal_dir=tmp_path / "state")
        stats = proxy.stats
    assert stats.busy_injected > 0 and stats.resets_injected > 0
    direct = blob_target(azurite, container)
    assert direct.client.download_blob().readall() == converted_bytes(source.path, tmp_path)
    # every fault cost exactly one more attempt, and the summary says so
    assert summary.retries == stats.busy_injected + stats.resets_injected
    assert counter.put_pages == summary.requests + summary.retries
    assert stats.put_page_bytes_forwarded == summary.data_bytes_sent


def test_a_service_that_stays_busy_fails_with_its_error_code(azurite, tmp_path) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, count=4, seed=2)
    container = azurite.new_container()
    retry = RetrySettings(total=1, initial_backoff=0.01, increment_base=0.01, jitter=0.0)
    with FaultProxy((azurite.host, azurite.port), busy_share=1.0, max_busy=10_000) as proxy:
        target = _proxied_target(azurite, proxy, container, retry)
        with vhd.open_image(str(source.path)) as image, \
                pytest.raises(TransientServiceError) as failure:
            upload_image(image, target, threads=2, journal_dir=tmp_path / "state")
        assert proxy.stats.put_pages_forwarded == 0
    assert failure.value.exit_code == 4
    assert failure.value.service_code == "ServerBusy"
    assert "503" in str(failure.value)


def test_a_range_is_put_again_after_the_retry_policy_gives_up(azurite, tmp_path) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, count=1, seed=8)
    container = azurite.new_container()
    retry = RetrySettings(total=1, initial_backoff=0.01, increment_base=0.01, jitter=0.0)
    with FaultProxy((azurite.host, azurite.port), busy_share=1.0, max_busy=4) as proxy:
        target = _proxied_target(azurite, proxy, container, retry)
        with vhd.open_image(str(source.path)) as image:
            summary = upload_image(image, target, threads=1, journal_dir=tmp_path / "state")
        assert proxy.stats.busy_injected == 4
    # put 1: two attempts (503, 503); put 2: two more (503, 503); put 3: accepted
    assert summary.retries == 4
    assert summary.requests == 2  # the data range and the footer
    direct = blob_target(azurite, container)
    assert direct.client.download_blob().readall() == converted_bytes(source.path, tmp_path)
