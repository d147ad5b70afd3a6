"""`azlift bulk` refuses a bad manifest before any work: exit 2, the file and the key path."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

BASE = """schema = "azlift.bulk/1"
[defaults]
destination = "https://acct.blob.core.windows.net/vhds/"
[[source]]
name = "hv01"
[[vm]]
id = "web01"
source = "hv01"
[[vm.disk]]
path = "/mnt/hv01/web01/os.vhdx"
role = "os"
[[vm.disk]]
path = "/mnt/hv01/web01/data0.vhdx"
lun = 0
"""
SECOND_VM = """[[vm]]
id = "db01"
source = "hv01"
[[vm.disk]]
path = "/mnt/hv01/db01/os.vhdx"
role = "os"
"""
MANAGED = BASE.replace('"https://acct.blob.core.windows.net/vhds/"',
                       '"managed-disk"\nresource_group = "rg"\nlocation = "westeurope"')

# (name, manifest text, key path named, words the message must carry)
BAD = [
    ("wrong schema", BASE.replace("azlift.bulk/1", "azlift.bulk/9"), "schema",
     'expected "azlift.bulk/1"'),
    ("unknown top-level key", "colour = 'blue'\n" + BASE, "colour", "unknown key"),
    ("unknown disk key", BASE + "size = 5\n", "vm[0].disk[1].size", "unknown key"),
    ("unknown vm key", BASE.replace('id = "web01"', 'id = "web01"\ncpus = 4'), "vm[0].cpus",
     "unknown key"),
    ("missing id", BASE.replace('id = "web01"\n', ""), "vm[0].id", "expected an id"),
    ("id with a slash", BASE.replace('"web01"', '"web/01"'), "vm[0].id", "'web/01'"),
    ("duplicate id", BASE + SECOND_VM.replace("db01", "web01", 1), "vm[1].id", "duplicate id"),
    ("unknown source", BASE.replace('source = "hv01"', 'source = "hv02"'), "vm[0].source",
     "no [[source]] named 'hv02'"),
    ("duplicate LUN", BASE + '[[vm.disk]]\npath = "/x/d1.vhd"\nlun = 0\n', "vm[0].disk[2].lun",
     "LUN 0 is also used by disk[1]"),
    ("LUN out of range", BASE.replace("lun = 0", "lun = 64"), "vm[0].disk[1].lun",
     "expected an integer 0..63, found 64"),
    ("LUN as text", BASE.replace("lun = 0", 'lun = "zero"'), "vm[0].disk[1].lun",
     "found a string"),
    ("data disk without LUN", BASE.replace("lun = 0", 'role = "data"'), "vm[0].disk[1].lun",
     "expected a LUN"),
    ("two OS disks", BASE.replace("lun = 0", 'role = "os"'), "vm[0].disk[1].role",
     "one OS disk"),
    ("OS disk with a LUN", BASE.replace('role = "os"', 'role = "os"\nlun = 1'),
     "vm[0].disk[0].lun", "an OS disk has no LUN"),
    ("disk without path", BASE.replace('path = "/mnt/hv01/web01/os.vhdx"\n', ""),
     "vm[0].disk[0].path", "expected a file path"),
    ("vm without disks", BASE.split("[[vm.disk]]")[0], "vm[0].disk", "at least one [[vm.disk]]"),
    ("no vm at all", BASE.split("[[vm]]")[0], "vm", "at least one [[vm]]"),
    ("bad register kind", BASE.replace("[defaults]", '[defaults]\nregister = "vm"'),
     "defaults.register", "expected one of none, image, gallery-version, disk"),
    ("image without resource group", BASE.replace("[defaults]", '[defaults]\nregister = '
                                                  '"image"\nlocation = "westeurope"'),
     "vm[0].resource_group", "needs resource_group"),
    ("threads zero", BASE.replace("[defaults]", "[defaults]\nthreads = 0"), "defaults.threads",
     "expected an integer 1..64, found 0"),
    ("threads as boolean", BASE.replace("[defaults]", "[defaults]\nthreads = true"),
     "defaults.threads", "found a boolean"),
    ("bad gallery version", BASE.replace('id = "web01"', 'id = "web01"\ngallery_version = "1.0"'),
     "vm[0].gallery_version", "expected MAJOR.MINOR.PATCH"),
    ("duplicate source", BASE.replace("[[vm]]", '[[source]]\nname = "hv01"\n[[vm]]', 1),
     "source[1].name", "declared twice"),
    ("source name with =", BASE.replace('name = "hv01"', 'name = "hv=01"'), "source[0].name",
     "no ',' or '='"),
    ("same blob twice", BASE + SECOND_VM.replace('role = "os"', 'role = "os"\nblob = '
                                                 '"web01-os.vhd"'),
     "vm[1].disk[0].blob", "also the target of vm[0].disk[0]"),
    ("same path twice", BASE.replace("/mnt/hv01/web01/data0.vhdx", "/mnt/hv01/web01/os.vhdx"),
     "vm[0].disk[1].path", "also listed at vm[0].disk[0]"),
    ("container name without emulator", BASE.replace(
        '"https://acct.blob.core.windows.net/vhds/"', '"vhds"'), "vm[0].destination",
     "expected a container URL"),
    ("account key", BASE.replace("[defaults]", '[defaults]\naccount_key = "c2VjcmV0c2VjcmV0"'),
     "defaults.account_key", "refused"),
    ("SAS in the destination", BASE.replace('vhds/"', 'vhds/?sv=2024-01-01&sig=c2VjcmV0"'),
     "defaults.destination", "refused"),
    ("not TOML", "schema = \n", None, "not valid TOML"),
    ("managed disks without a resource group", BASE.replace(
        '"https://acct.blob.core.windows.net/vhds/"', '"managed-disk"\nlocation = "westeurope"'),
     "vm[0].resource_group", 'destination = "managed-disk" needs resource_group'),
    ("gallery version from managed disks", MANAGED.replace(
        "[defaults]", '[defaults]\nregister = "gallery-version"'), "vm[0].register",
     "made from VHD blobs"),
    ("disk name on a VM uploaded to blobs", BASE + 'disk_name = "data0"\n',
     "vm[0].disk[1].disk_name", 'applies to destination = "managed-disk"'),
    ("bad disk name", MANAGED + 'disk_name = "-data0"\n', "vm[0].disk[1].disk_name",
     "expected a disk name"),
    ("same managed disk twice", MANAGED + SECOND_VM.replace(
        'role = "os"', 'role = "os"\ndisk_name = "web01-os"'), "vm[1].disk[0].disk_name",
     "managed disk 'disk:rg/web01-os' is also the target of vm[0].disk[0]"),
]


@pytest.mark.parametrize("name, text, key_path, words", BAD, ids=[case[0] for case in BAD])
def test_bad_manifest_exits_2_naming_the_key_path(run_main, tmp_path, name, text, key_path,
                                                  words) -> None:
    manifest = tmp_path / "plan.toml"
    manifest.write_text(text)
    for command in (["check"], ["run"], ["run", "--dry-run"]):
        result = run_main("bulk", *command, manifest)
        assert result.code == 2, (command, result.err)
        assert "Traceback" not in result.err
        where = f"{manifest}: {key_path}: " if key_path else f"{manifest}: "
        lines = [line for line in result.err_lines if where in line]
        assert lines, result.err
        assert any(words in line for line in lines), result.err
        assert "c2VjcmV0" not in result.err and result.out == ""


def test_a_bad_manifest_starts_no_cluster(tmp_path) -> None:
    """Refused before any work: the process never even imports Dask."""
    manifest = tmp_path / "plan.toml"
    manifest.write_text(BAD[7][1])
    probe = ("import sys; from azlift.cli.main import main; "
             f"code = main(['bulk', 'run', {str(manifest)!r}]); "
             "print(code, 'distributed' in sys.modules, 'dask' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr
    assert "vm[0].source" in done.stderr


def test_bad_manifest_with_json_is_one_error_document(run_main, tmp_path) -> None:
    manifest = tmp_path / "plan.toml"
    manifest.write_text(BAD[9][1])
    result = run_main("bulk", "check", manifest, "--json")
    assert result.code == 2
    document = json.loads(result.out)
    assert document["error"]["code"] == "bad_manifest"
    assert "vm[0].disk[1].lun" in document["error"]["message"]


CSV = """vm,source,path,role,lun,os_type,threads
web01,hv01,/mnt/hv01/web01/os.vhdx,os,,linux,4
web01,hv01,/mnt/hv01/web01/data0.vhdx,,0,,
db01,nas1,/mnt/nas1/db01.vhd,os,,windows,
"""


def test_import_writes_a_manifest_that_validates(run_main, tmp_path) -> None:
    from azlift.bulk import load_manifest

    table = tmp_path / "disks.csv"
    table.write_text(CSV)
    output = tmp_path / "plan.toml"
    result = run_main("bulk", "import", table, "-o", output, "--destination",
                      "https://acct.blob.core.windows.net/vhds/", "--register", "image",
                      "-g", "rg", "-l", "westeurope")
    assert result.code == 0, result.err
    manifest = load_manifest(output)
    web, db = manifest.vms
    assert (web.source, web.settings.os_type, web.settings.threads) == ("hv01", "linux", 4)
    assert [(d.role, d.lun, d.path) for d in web.disks] == [
        ("os", None, "/mnt/hv01/web01/os.vhdx"), ("data", 0, "/mnt/hv01/web01/data0.vhdx")]
    assert (db.source, db.settings.os_type, db.settings.register) == ("nas1", "windows", "image")
    assert [s.name for s in manifest.sources] == ["hv01", "nas1"]

    again = run_main("bulk", "import", table, "-o", output)
    assert again.code == 5 and "--force" in again.err


def test_import_names_the_row_that_contradicts_its_vm(run_main, tmp_path) -> None:
    table = tmp_path / "disks.csv"
    table.write_text(CSV.replace(",,0,,", ",,0,windows,"))
    output = tmp_path / "plan.toml"
    result = run_main("bulk", "import", table, "-o", output, "--emulator", "--destination", "v01")
    assert result.code == 2
    assert f"{table}: row 3: os_type: 'windows' differs from row 2's value for vm web01" in \
        result.err
    assert not output.exists()


def test_import_validates_the_result_like_a_manifest(run_main, tmp_path) -> None:
    table = tmp_path / "disks.csv"
    table.write_text(CSV.replace(",,0,,", ",,64,,"))
    output = tmp_path / "plan.toml"
    result = run_main("bulk", "import", table, "-o", output, "--emulator", "--destination", "v01")
    assert result.code == 2 and "vm[0].disk[1].lun: expected an integer 0..63, found 64" in \
        result.err
    assert not output.exists()
