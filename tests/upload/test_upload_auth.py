"""az-CLI-style credential resolution: precedence, connection strings, emulator, refusals."""
from __future__ import annotations

import pytest
from azure.core.credentials import AzureSasCredential

from azlift.upload.auth import (
    EMULATOR_ACCOUNT,
    EMULATOR_KEY,
    AuthOptions,
    account_from_url,
    parse_connection_string,
    resolve_blob,
)
from azlift.upload.errors import UsageError

URL = "https://acct.blob.core.windows.net/vhds/disk.vhd"
KEY = "c2VjcmV0LWtleS12YWx1ZQ=="


def test_explicit_key_beats_the_environment() -> None:
    env = {"AZURE_STORAGE_KEY": "ZW52LWtleQ==", "AZURE_STORAGE_CONNECTION_STRING": "x"}
    resolved = resolve_blob(URL, AuthOptions(account_key=KEY), env)
    assert resolved.method == "account-key"
    assert resolved.credential == {"account_name": "acct", "account_key": KEY}
    assert KEY not in repr(resolved) and KEY not in repr(AuthOptions(account_key=KEY))


def test_sas_in_url_beats_environment_key() -> None:
    url = URL + "?sv=2021&sig=abc"
    resolved = resolve_blob(url, AuthOptions(), {"AZURE_STORAGE_KEY": KEY})
    assert resolved.method == "sas" and resolved.url == url and resolved.credential is None


def test_sas_token_option_is_appended_to_the_url() -> None:
    resolved = resolve_blob(URL, AuthOptions(sas_token="?sv=1&sig=zz"), {})
    assert resolved.url == URL + "?sv=1&sig=zz"


@pytest.mark.parametrize("env, method", [
    ({"AZURE_STORAGE_CONNECTION_STRING": f"AccountName=acct;AccountKey={KEY}"},
     "connection-string"),
    ({"AZURE_STORAGE_KEY": KEY}, "account-key"),
    ({"AZURE_STORAGE_SAS_TOKEN": "sv=1&sig=q"}, "sas"),
])
def test_environment_in_az_cli_order(env, method) -> None:
    assert resolve_blob(URL, AuthOptions(), env).method == method


def test_connection_string_with_a_relative_destination() -> None:
    conn = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.chinacloudapi.cn"
    resolved = resolve_blob("vhds/disk.vhd", AuthOptions(connection_string=conn), {})
    assert resolved.url == "https://acct.blob.core.chinacloudapi.cn/vhds/disk.vhd"


def test_connection_string_forms() -> None:
    endpoint, credential = parse_connection_string(
        "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;SharedAccessSignature=sv=1&sig=x")
    assert endpoint == "http://127.0.0.1:1/devstoreaccount1"
    assert isinstance(credential, AzureSasCredential)
    endpoint, credential = parse_connection_string("UseDevelopmentStorage=true")
    assert credential == {"account_name": EMULATOR_ACCOUNT, "account_key": EMULATOR_KEY}
    with pytest.raises(UsageError, match="neither AccountKey nor SharedAccessSignature"):
        parse_connection_string("AccountName=acct")


def test_emulator_endpoint_from_option_or_environment() -> None:
    env = {"AZLIFT_EMULATOR_ENDPOINT": "http://127.0.0.1:9999"}
    resolved = resolve_blob("vhds/d.vhd", AuthOptions(emulator=True), env)
    assert resolved.url == "http://127.0.0.1:9999/devstoreaccount1/vhds/d.vhd"
    resolved = resolve_blob("vhds/d.vhd", AuthOptions(
        emulator=True, emulator_endpoint="http://127.0.0.1:7/devstoreaccount1/"), env)
    assert resolved.url == "http://127.0.0.1:7/devstoreaccount1/vhds/d.vhd"
    assert resolved.credential["account_key"] == EMULATOR_KEY


@pytest.mark.parametrize("dest, message", [
    ("ftp://acct.blob.core.windows.net/vhds/d.vhd", "is not a blob URL"),
    ("https://acct.blob.core.windows.net/vhds", "is not a blob URL"),
    ("https://acct.blob.core.windows.net/ab/d.vhd", "3 to 63 characters"),
    ("vhds/d.vhd", "is not a blob URL"),
])
def test_malformed_destinations_are_refused(dest, message) -> None:
    with pytest.raises(UsageError, match=message):
        resolve_blob(dest, AuthOptions(account_key=KEY), {})


def test_no_credential_at_all() -> None:
    with pytest.raises(UsageError, match="no storage credential"):
        resolve_blob(URL, AuthOptions(), {})


def test_account_from_either_url_style() -> None:
    assert account_from_url(URL) == "acct"
    assert account_from_url("http://127.0.0.1:10000/devstoreaccount1/c/b") == "devstoreaccount1"
