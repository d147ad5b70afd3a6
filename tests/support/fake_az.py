"""A stand-in ``az`` executable that answers ``az account get-access-token``.

azure-identity's ``AzureCliCredential`` (and through it ``DefaultAzureCredential``, what
``--auth-mode login`` uses) runs ``az account get-access-token --output json --resource
R`` and reads the JSON it prints. This stand-in prints what the real az CLI prints, with a
JWT that Azurite's ``--oauth basic`` accepts (issuer, audience and expiry are checked, the
signature is not), so the credential chain runs exactly as on a signed-in user's machine.

What it mints is controlled by a JSON file the test rewrites (``FakeAz.configure``); each
call is logged with the time, the arguments and the expiry it handed out.

Fixture: ``fake_az`` (puts the stand-in first on PATH and clears every other way to sign in).
"""
from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
STORAGE_AUDIENCE = "https://storage.azure.com"

SCRIPT = textwrap.dedent('''\
    #!{python}
    """Stand-in az CLI for tests: account get-access-token only."""
    import base64, json, sys, time, uuid

    CONFIG, LOG = {config!r}, {log!r}

    def b64(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    args = sys.argv[1:]
    with open(CONFIG) as handle:
        config = json.load(handle)
    now = int(time.time())
    expires = now + config["lifetime"]
    entry = {{"time": time.time(), "args": args, "expires_on": expires}}

    def log(**more):
        with open(LOG, "a") as handle:
            handle.write(json.dumps(dict(entry, **more)) + "\\n")

    if args[:2] != ["account", "get-access-token"]:
        log()
        sys.stderr.write("ERROR: this stand-in only answers 'account get-access-token'\\n")
        sys.exit(2)
    if config.get("fail"):
        log()
        sys.stderr.write(config["fail"] + "\\n")
        sys.exit(1)
    claims = {{"aud": config["audience"], "iss": "https://sts.windows.net/{tenant}/",
              "iat": now - 60, "nbf": now - 60, "exp": expires,
              "oid": str(uuid.uuid4()), "tid": "{tenant}", "appid": str(uuid.uuid4()),
              "sub": "azlift-test-user"}}
    token = b64({{"typ": "JWT", "alg": "RS256", "kid": "test"}}) + "." + b64(claims) + ".c2ln"
    log(token=token)
    print(json.dumps({{
        "accessToken": token, "expiresOn": time.strftime("%Y-%m-%d %H:%M:%S.000000",
                                                         time.localtime(expires)),
        "expires_on": expires, "subscription": "00000000-0000-0000-0000-000000000000",
        "tenant": "{tenant}", "tokenType": "Bearer"}}))
''')


@dataclass
class FakeAz:
    """The stand-in's folder (first on PATH), its settings file and its call log."""

    bin_dir: Path
    config: Path
    log: Path

    def configure(self, *, lifetime: int = 3600, audience: str = STORAGE_AUDIENCE,
                  fail: str | None = None) -> None:
        """What the next calls mint: tokens valid ``lifetime`` seconds for ``audience``;
        with ``fail``, az exits 1 with that message (as when not signed in)."""
        self.config.write_text(json.dumps({"lifetime": lifetime, "audience": audience,
                                           "fail": fail}))

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def tokens(self) -> list[str]:
        """Every token handed out so far (what must never appear in any output)."""
        return [call["token"] for call in self.calls() if "token" in call]


def write_fake_az(directory: Path) -> FakeAz:
    """Write the stand-in ``az`` into ``directory``; it answers with 1-hour tokens."""
    directory.mkdir(parents=True, exist_ok=True)
    fake = FakeAz(directory, directory / "az-config.json", directory / "az-calls.log")
    fake.configure()
    script = directory / "az"
    script.write_text(SCRIPT.format(python=sys.executable, config=str(fake.config),
                                    log=str(fake.log), tenant=TENANT))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return fake


# Every environment variable through which the credential chain or the storage options
# could find another way in: a signed-in user with only the az CLI has none of them.
OTHER_SIGN_INS = (
    "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET",
    "AZURE_TOKEN_CREDENTIALS", "AZLIFT_ARM_TOKEN",
)


@pytest.fixture
def fake_az(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAz]:
    """The stand-in az first on PATH, and no other credential in the environment."""
    fake = write_fake_az(tmp_path / "az-bin")
    monkeypatch.setenv("PATH", f"{fake.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    for name in OTHER_SIGN_INS:
        monkeypatch.delenv(name, raising=False)
    # A home of its own: no token cache, no az profile, no VS Code sign-in to fall back on.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    yield fake
