"""The manifest: defaults and overrides, derived names, paths, and what is refused."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from azlift.bulk import ManifestError, SecretInManifestError, load_manifest, parse_manifest

GOOD = """
schema = "azlift.bulk/1"
[defaults]
destination = "https://acct.blob.core.windows.net/vhds/"
threads = 4
register = "image"
resource_group = "rg-migration"
location = "westeurope"
[limits]
account_requests = 16
[[source]]
name = "hv01"
max_disks = 3
[[source]]
name = "nas1"
[[vm]]
id = "web01"
source = "hv01"
os_type = "linux"
[[vm.disk]]
path = "web01/os.vhdx"
role = "os"
[[vm.disk]]
path = "/mnt/hv01/web01/data0.vhdx"
lun = 0
blob = "custom/data0.vhd"
[[vm]]
id = "db01"
source = "nas1"
register = "none"
threads = 2
[[vm.disk]]
path = "/mnt/nas1/db01.vhd"
lun = 3
"""


def test_defaults_overrides_names_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(GOOD)
    manifest = load_manifest(path)
    web, db = manifest.vms
    assert (web.id, web.source, web.settings.register, web.settings.threads) == \
        ("web01", "hv01", "image", 4)
    assert web.settings.os_type == "linux" and web.settings.location == "westeurope"
    assert (db.settings.register, db.settings.threads) == ("none", 2)
    os_disk, data_disk = web.disks
    assert os_disk.path == str(tmp_path / "web01" / "os.vhdx")  # relative to the manifest
    assert (os_disk.role, os_disk.lun, os_disk.blob, os_disk.label) == \
        ("os", None, "web01-os.vhd", "os")
    assert (data_disk.role, data_disk.lun, data_disk.label) == ("data", 0, "lun0")
    assert web.target_url(data_disk) == "https://acct.blob.core.windows.net/vhds/custom/data0.vhd"
    assert db.target_url(db.disks[0]) == "https://acct.blob.core.windows.net/vhds/db01-lun3.vhd"
    assert manifest.source("hv01").max_disks == 3 and manifest.source("nas1").max_disks == 2
    assert manifest.source("hv01").resource == "src-hv01"
    assert manifest.limits.account_requests == 16 and manifest.limits.arm_writes == 8
    assert len(manifest.digest) == 64


def test_every_problem_is_listed_with_its_key_path() -> None:
    document = tomllib.loads(GOOD.replace("lun = 3", "lun = 99").replace(
        'source = "nas1"\nregister', 'source = "nas9"\nregister'))
    with pytest.raises(ManifestError) as raised:
        parse_manifest(document, "plan.toml")
    problems = raised.value.problems
    assert any(p.startswith("plan.toml: vm[1].disk[0].lun: expected an integer 0..63, found 99")
               for p in problems), problems
    assert any(p.startswith("plan.toml: vm[1].source: no [[source]] named 'nas9'")
               for p in problems), problems
    assert raised.value.exit_code == 2
    assert "(and 1 more problem)" in str(raised.value)


def test_verify_level_defaults_to_pages_and_is_checked() -> None:
    document = tomllib.loads(GOOD.replace('threads = 2', 'threads = 2\nverify = "full"'))
    web, db = parse_manifest(document, "plan.toml").vms
    assert (web.settings.verify, db.settings.verify) == ("pages", "full")
    document = tomllib.loads(GOOD.replace('threads = 2', 'threads = 2\nverify = "bytes"'))
    with pytest.raises(ManifestError) as raised:
        parse_manifest(document, "plan.toml")
    assert raised.value.problems[0].startswith("plan.toml: vm[1].verify: expected one of "), \
        raised.value.problems
    assert "'bytes'" in raised.value.problems[0]


def test_a_secret_anywhere_is_refused_without_echoing_it() -> None:
    secret = "c2VjcmV0LWtleS12YWx1ZQ=="
    document = tomllib.loads(GOOD.replace('threads = 2', f'threads = 2\naccount_key = "{secret}"'))
    with pytest.raises(SecretInManifestError) as raised:
        parse_manifest(document, "plan.toml")
    assert raised.value.problems[0].startswith("plan.toml: vm[1].account_key: refused")
    assert secret not in " ".join(raised.value.problems)
    sas = "https://acct.blob.core.windows.net/vhds/?sv=2024&sig=abcdef"
    document = tomllib.loads(GOOD.replace('"https://acct.blob.core.windows.net/vhds/"', f'"{sas}"'))
    with pytest.raises(SecretInManifestError) as raised:
        parse_manifest(document, "plan.toml")
    assert raised.value.problems[0].startswith("plan.toml: defaults.destination: refused")
    assert "abcdef" not in " ".join(raised.value.problems)


def test_a_single_source_is_the_default_source() -> None:
    document = tomllib.loads('schema = "azlift.bulk/1"\n[defaults]\ndestination = "vhds"\n'
                             'emulator = true\n[[source]]\nname = "only"\n[[vm]]\nid = "a"\n'
                             '[[vm.disk]]\npath = "/d/a.raw"\nrole = "os"\n')
    [vm] = parse_manifest(document, "m.toml").vms
    assert vm.source == "only" and vm.target_url(vm.disks[0]) == "vhds/a-os.vhd"


def test_managed_disks_are_named_per_vm_and_disk_unless_named() -> None:
    document = tomllib.loads(GOOD.replace(
        'destination = "https://acct.blob.core.windows.net/vhds/"', 'destination = "managed-disk"'
    ).replace('blob = "custom/data0.vhd"', 'disk_name = "web01_data"'))
    web, db = parse_manifest(document, "plan.toml").vms
    assert web.settings.managed_disk and web.settings.register == "image"
    assert [web.disk_name(d) for d in web.disks] == ["web01-os", "web01_data"]
    assert web.target_url(web.disks[0]) == "disk:rg-migration/web01-os"
    assert db.target_url(db.disks[0]) == "disk:rg-migration/db01-lun3"


@pytest.mark.parametrize("first, second", [
    (('destination = "managed-disk"', 'disk_name = "Web01-os"'),
     ('destination = "managed-disk"', 'disk_name = "web01-OS"')),
    (('destination = "managed-disk"', 'disk_name = "d1"'),
     ('destination = "managed-disk"\nresource_group = "RG-Migration"', 'disk_name = "D1"')),
    (('destination = "https://acct.blob.core.windows.net/vhds/"', 'blob = "same.vhd"'),
     ('destination = "https://ACCT.Blob.Core.Windows.Net/vhds"', 'blob = "same.vhd"')),
])
def test_two_disks_with_one_target_in_any_spelling_are_refused(first, second) -> None:  # noqa: ANN001
    """Azure does not tell resource groups, disk names, hosts or containers apart by case:
    two VMs writing into one disk would each see the other's data."""
    document = tomllib.loads(two_vms(first, second))
    with pytest.raises(ManifestError) as raised:
        parse_manifest(document, "plan.toml")
    assert any("is also the target of vm[0].disk[0]" in p for p in raised.value.problems), \
        raised.value.problems


def test_blob_names_differing_only_in_case_are_two_targets() -> None:
    where = 'destination = "https://acct.blob.core.windows.net/vhds"'
    document = tomllib.loads(two_vms((where, 'blob = "Disk.vhd"'), (where, 'blob = "disk.vhd"')))
    assert len(parse_manifest(document, "plan.toml").vms) == 2


def two_vms(first: tuple[str, str], second: tuple[str, str]) -> str:
    """A manifest of two VMs of one disk each: (VM settings, disk keys) for each."""
    vms = "".join(f"""
[[vm]]
id = "{name}"
{settings}
[[vm.disk]]
path = "/mnt/{name}.vhd"
role = "os"
{disk}
""" for name, (settings, disk) in zip("ab", (first, second)))
    return f"""
schema = "azlift.bulk/1"
[defaults]
resource_group = "rg-migration"
location = "westeurope"
register = "none"
[[source]]
name = "hv01"
{vms}"""


@pytest.mark.parametrize("destination", [
    'destination = "ab"\nemulator = true', 'destination = "VHDS"\nemulator = true',
    'destination = "my vhds"\nemulator = true', 'destination = "a--b/"\nemulator = true',
    'destination = "https://acct.blob.core.windows.net/My_Vhds/"'])
def test_a_container_name_azure_refuses_is_refused_before_any_run(destination: str) -> None:
    """Each VM would otherwise fail at run time with a usage error or HTTP 400, after
    `bulk check` said ready."""
    document = tomllib.loads(two_vms((destination, 'blob = "a.vhd"'),
                                     (destination, 'blob = "b.vhd"')))
    with pytest.raises(ManifestError) as raised:
        parse_manifest(document, "plan.toml")
    assert any("expected a container name of 3-63 lowercase letters" in p
               for p in raised.value.problems), raised.value.problems


def test_emulator_urls_and_valid_names_pass() -> None:
    for destination in ('destination = "vhds-01"\nemulator = true',
                        'destination = "/vhds/"\nemulator = true',
                        'destination = "http://127.0.0.1:10000/devstoreaccount1/vhds"',
                        'destination = "https://acct.blob.core.windows.net/$root"'):
        document = tomllib.loads(two_vms((destination, 'blob = "a.vhd"'),
                                         (destination, 'blob = "b.vhd"')))
        assert len(parse_manifest(document, "plan.toml").vms) == 2, destination
