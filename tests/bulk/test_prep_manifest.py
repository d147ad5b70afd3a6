"""``[vm.prep]`` in the manifest: what it holds, its defaults, and every secret refused."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from azlift.bulk import ManifestError, SecretInManifestError, parse_manifest
from azlift.bulk.prep_spec import DEFAULT_SETTLE_SECONDS

BASE = """
schema = "azlift.bulk/1"
[defaults]
destination = "https://acct.blob.core.windows.net/vhds/"
[[source]]
name = "hv01"
[[vm]]
id = "web01"
{vm}
[[vm.disk]]
path = "web01.vhdx"
role = "os"
{prep}
"""


def parse(prep: str, vm: str = "") -> object:
    text = BASE.format(vm=vm, prep=prep)
    return parse_manifest(tomllib.loads(text), "plan.toml", base_dir=Path("/plans"))


def problems(prep: str, vm: str = "") -> list[str]:
    with pytest.raises(ManifestError) as caught:
        parse(prep, vm)
    return caught.value.problems


def test_a_linux_guest_with_a_key_file_and_defaults() -> None:
    manifest = parse('[vm.prep]\nos = "linux"\nhost = "10.0.0.5"\nuser = "admin"\n'
                     'identity = "keys/migrate"\nsudo_password_env = "WEB01_SUDO"\n'
                     'known_hosts = "~/.ssh/known_hosts"\n', vm='reach = "lab"')
    vm = manifest.vms[0]
    assert vm.reach == "lab"
    prep = vm.prep
    assert (prep.os, prep.host, prep.login, prep.port) == ("linux", "10.0.0.5", "admin", None)
    assert prep.identity == "/plans/keys/migrate"  # relative to the manifest, like disks
    assert prep.known_hosts == "~/.ssh/known_hosts"  # the worker's home, expanded there
    assert prep.sudo_password_env == "WEB01_SUDO"
    assert prep.settle_seconds == DEFAULT_SETTLE_SECONDS
    assert vm.settings.os_type == "linux"  # the prep says what the disk holds
    assert manifest.limits.prep_guests == 4


def test_a_windows_guest_and_the_prep_bound() -> None:
    manifest = parse('[vm.prep]\nos = "windows"\nhost = "win01"\npassword_env = "WIN01_PW"\n'
                     'transport = "basic"\nca_cert = "/etc/ca.pem"\nsettle_seconds = 5\n'
                     'settle_timeout = 60\n')
    prep = manifest.vms[0].prep
    assert (prep.login, prep.transport, prep.ca_cert, prep.settle_timeout) == (
        "Administrator", "basic", "/etc/ca.pem", 60.0)
    bounded = parse_manifest(tomllib.loads(
        BASE.format(vm="", prep='[vm.prep]\nos = "linux"\nhost = "h"\n')
        + "[limits]\nprep_guests = 2\n"), "plan.toml")
    assert bounded.limits.prep_guests == 2


@pytest.mark.parametrize("line, expected", [
    ('password = "hunter2"', "password: refused"),
    ('password_env = "hunter2 and more!"', "password_env: refused: expected the NAME"),
    ('sudo_password_env = "p@ss"', "sudo_password_env: refused"),
    ('identity = "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3Blbn=="', "identity: refused"),
])
def test_a_secret_in_place_of_a_name_is_refused(line: str, expected: str) -> None:
    with pytest.raises(SecretInManifestError) as caught:
        parse(f'[vm.prep]\nos = "linux"\nhost = "h"\n{line}\n')
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems
    assert "hunter2" not in str(caught.value) and "b3Blbn" not in str(caught.value)


def test_every_mistake_is_named_with_its_key_path() -> None:
    found = problems('[vm.prep]\nos = "bsd"\nport = 70000\nmode_vm = "yes"\ncolour = 1\n'
                     'settle_seconds = 30\nsettle_timeout = 10\n')
    text = "\n".join(found)
    assert "vm[0].prep.os: expected one of linux, windows, found 'bsd'" in text
    assert "vm[0].prep.host: expected a host name or address, found nothing" in text or \
        "vm[0].prep.host: expected a host name or address" in text
    assert "vm[0].prep.port: expected an integer 1..65535, found 70000" in text
    assert "vm[0].prep.colour: unknown key" in text
    assert "vm[0].prep.settle_timeout: expected more than settle_seconds (30)" in text


def test_keys_of_the_other_os_and_contradictions_are_refused() -> None:
    text = "\n".join(problems('[vm.prep]\nos = "linux"\nhost = "h"\nca_cert = "c.pem"\n'))
    assert 'vm[0].prep.ca_cert: only for os = "windows"' in text
    text = "\n".join(problems('[vm.prep]\nos = "linux"\nhost = "h"\n', vm='os_type = "windows"'))
    assert 'vm[0].os_type: os_type = "windows" but the guest is prepared as os = "linux"' in text
    text = "\n".join(problems("", vm='reach = "lab"'))
    assert "vm[0].reach: reach names the workers that run a guest's prep" in text
    text = "\n".join(problems('[vm.prep]\nos = "windows"\nhost = "h"\nhttp = true\n'
                              'transport = "basic"\n'))
    assert "clear text" in text


def test_a_vm_without_prep_keeps_its_state_digest() -> None:
    """Rows written before prep existed must not look changed (that would start them over)."""
    import hashlib
    import json
    from dataclasses import asdict

    from azlift.bulk.state import vm_spec_digest

    vm = parse("").vms[0]
    old = dict(asdict(vm))
    old.pop("prep"), old.pop("reach")
    assert vm_spec_digest(vm) == hashlib.sha256(
        json.dumps(old, sort_keys=True, default=str).encode()).hexdigest()
