"""upload/rest.py, the lean request path, against the storage SDK it stands in for: the
same Shared Key signature, an API version the SDK speaks, the same number of attempts
under the same retry policy, tokens renewed before they expire, one-line signing errors."""
from __future__ import annotations

import base64
from email.utils import formatdate

import pytest
from hypothesis import given, strategies as st
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
from azure.storage.blob._shared.policies import is_exhausted

from azlift import vhd
from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.support.fault_proxy import FaultProxy
from tests.upload.helpers import WireCounter, make_source
from azlift.upload.errors import AuthError, TransientServiceError
from azlift.upload.rest import API_VERSION, BearerToken, SharedKey, _exhausted, http_date
from azlift.upload.target import BlobPageTarget, RetrySettings
from azlift.upload.uploader import upload_image

KEY = base64.b64encode(b"not a real key, 32 bytes long!!!").decode()


@pytest.mark.parametrize("method, path, query, headers", [
    ("PUT", "/acct/vhds/disk.vhd", {"comp": "page"},
     {"x-ms-page-write": "update", "x-ms-range": "bytes=512-4194815",
      "x-ms-content-crc64": "AAAAAAAAAAA=", "Content-Length": "4194304",
      "x-ms-version": API_VERSION, "x-ms-date": "Wed, 02 Dec 2026 01:00:00 GMT"}),
    ("PUT", "/devstoreaccount1/c-1/a%20b.vhd", {},
     {"x-ms-blob-type": "PageBlob", "x-ms-blob-content-length": "1049088",
      "If-None-Match": "*", "x-ms-meta-azlift_state": "uploading", "Content-Length": "0",
      "x-ms-version": API_VERSION, "x-ms-date": "Wed, 02 Dec 2026 01:00:00 GMT"}),
    ("HEAD", "/acct/vhds/disk.vhd", {"comp": "metadata"},
     {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==", "x-ms-date": "Wed, 02 Dec 2026 01:00:00 GMT",
      "x-ms-version": API_VERSION, "Content-Length": "0"}),
])
def test_shared_key_signature_matches_the_sdks(method, path, query, headers) -> None:
    url = "https://acct.blob.core.windows.net" + path
    if query:
        url += "?" + "&".join(f"{name}={value}" for name, value in query.items())
    request = PipelineRequest(HttpRequest(method, url, headers=dict(headers)),
                              PipelineContext(None))
    SharedKeyCredentialPolicy("acct", KEY).on_request(request)
    ours = dict(headers)
    SharedKey("acct", KEY).sign(method, path, query, ours)
    assert ours["Authorization"] == request.http_request.headers["Authorization"]


def test_the_api_version_is_one_the_sdk_speaks() -> None:
    from azure.storage.blob._serialize import _SUPPORTED_API_VERSIONS
    assert API_VERSION in _SUPPORTED_API_VERSIONS


@pytest.mark.parametrize("total, connect, read, status", [
    (6, 3, 3, 3), (6, 2, 3, -1), (0, 3, 3, 3), (-1, 3, 3, 3), (1, 0, 0, 0), (0, 0, 0, 0),
    (1, -1, 3, 3), (2, 0, -1, 0),
])
def test_retry_counters_end_as_the_sdks_do(total, connect, read, status) -> None:
    counters = {"total": total, "connect": connect, "read": read, "status": status}
    assert _exhausted(counters) == is_exhausted(dict(counters))


@pytest.mark.parametrize("total", [0, 1, 3, 6])
def test_a_busy_service_gets_as_many_attempts_as_the_sdk_gives_it(
        azurite, tmp_path, total) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, count=1, seed=3)
    retry = RetrySettings(total=total, initial_backoff=0.0, increment_base=0.0, jitter=0.0)
    attempts = {}
    for path in ("lean", "sdk"):
        container = azurite.new_container()
        counter = WireCounter()
        with FaultProxy((azurite.host, azurite.port), busy_share=1.0,
                        max_busy=10_000) as proxy:
            options = {} if path == "lean" else {"use_env_settings": True}
            target = BlobPageTarget(proxy.url_for(azurite.blob_url(container, "d.vhd")),
                                    {"account_name": azurite.account_name,
                                     "account_key": azurite.account_key},
                                    retry=retry, request_hook=counter, **options)
            assert target.lean == (path == "lean")
            with vhd.open_image(str(source.path)) as image, \
                    pytest.raises(TransientServiceError) as failure:
                upload_image(image, target, threads=1, journal_dir=tmp_path / path)
        assert failure.value.service_code == "ServerBusy" and failure.value.status == 503
        attempts[path] = counter.put_pages
    assert attempts["lean"] == attempts["sdk"] > 1


class Tokens:
    """A token credential whose tokens last ``lifetime`` seconds; counts the asks."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime, self.asked = lifetime, 0

    def get_token(self, *scopes: str, **kwargs: object):
        import time
        from azure.core.credentials import AccessToken
        self.asked += 1
        assert scopes == ("https://storage.azure.com/.default",)
        return AccessToken(f"token-{self.asked}", int(time.time() + self.lifetime))


def test_a_token_is_reused_until_five_minutes_before_it_expires() -> None:
    def sign_three_times(credential: Tokens) -> str:
        signer = BearerToken(credential)
        for _ in range(3):
            headers: dict[str, str] = {}
            signer.sign("PUT", "/a/c/b", {}, headers)
        return headers["Authorization"]

    lasting, expiring = Tokens(3600), Tokens(120)
    assert sign_three_times(lasting) == "Bearer token-1" and lasting.asked == 1
    assert sign_three_times(expiring) == "Bearer token-3" and expiring.asked == 3


def test_a_key_that_is_not_base64_fails_in_one_line_before_sending() -> None:
    target = BlobPageTarget("http://127.0.0.1:9/devstoreaccount1/vhds/d.vhd",
                            {"account_name": "devstoreaccount1", "account_key": "not base64!"})
    assert target.lean
    with pytest.raises(AuthError, match="cannot sign requests to .*d.vhd with this "
                                        "credential: the account key is not valid base64"):
        target.exists()


def test_a_hooked_request_frees_its_body_without_the_garbage_collector() -> None:
    import gc
    import weakref

    from azlift.upload.rest import SentRequest

    class Body(bytearray):
        pass

    body = Body(4096)
    alive = weakref.ref(body)
    seen = []
    request = SentRequest("PUT", "http://h/a/c/b?comp=page", {}, body)
    seen.append(request.http_request.body is body)
    gc.disable()
    try:
        del request, body
        assert alive() is None  # freed by reference counting: no cycle holds it
    finally:
        gc.enable()
    assert seen == [True]


@given(st.floats(min_value=0, max_value=253402300799, allow_nan=False))  # to 9999-12-31
def test_the_date_header_is_the_email_packages_imf_fixdate(seconds: float) -> None:
    assert http_date(seconds) == formatdate(seconds, usegmt=True)


def test_the_date_header_defaults_to_now() -> None:
    import time
    before = formatdate(time.time(), usegmt=True)
    now = http_date()
    assert now in (before, formatdate(time.time(), usegmt=True))
