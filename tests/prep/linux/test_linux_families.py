"""Family detection from /etc/os-release, as a table of real distribution releases."""
from __future__ import annotations

import pytest

from azlift.prep.linux import detect_family, parse_os_release
from azlift.prep.linux.families import FAMILIES_BY_ID, Family

from tests.prep.linux.os_release_samples import SAMPLES


@pytest.mark.parametrize(("label", "text", "family", "matched_by"), SAMPLES,
                         ids=[s[0] for s in SAMPLES])
def test_detects_family(label: str, text: str, family: str, matched_by: str) -> None:
    detection = detect_family(parse_os_release(text))
    assert detection.family.name == family
    assert detection.matched_by == matched_by
    assert (detection.warning is not None) == (matched_by == "fallback")


def test_table_covers_at_least_twelve_real_releases_and_every_family() -> None:
    assert len(SAMPLES) >= 12
    covered = {family for _, _, family, _ in SAMPLES}
    assert covered >= {cls().name for cls in FAMILIES_BY_ID.values()} | {"generic"}


def test_parse_handles_quotes_escapes_comments_and_junk() -> None:
    release = parse_os_release(
        '# comment\nID="rhel"\nID_LIKE=\'fedora centos\'\nPRETTY_NAME="A \\"quoted\\" $name"\n'
        'garbage line\nBROKEN="unterminated\nVERSION_ID=9.3\n')
    assert release.id == "rhel"
    assert release.id_like == ("fedora", "centos")
    assert release.pretty_name == 'A "quoted" $name'
    assert release.version_id == "9.3"
    assert "BROKEN" not in release.fields


def test_empty_os_release_falls_back_with_a_warning() -> None:
    detection = detect_family(parse_os_release(""))
    assert type(detection.family) is Family
    assert "ID=?" in detection.warning


def test_family_data_differs_where_the_docs_differ() -> None:
    ubuntu = FAMILIES_BY_ID["ubuntu"]()
    rhel = FAMILIES_BY_ID["rhel"]()
    suse = FAMILIES_BY_ID["sles"]()
    assert ubuntu.initramfs_listers == ("lsinitramfs",) and rhel.initramfs_listers == ("lsinitrd",)
    assert (ubuntu.agent_service, ubuntu.ssh_service) == ("walinuxagent", "ssh")
    assert (rhel.agent_service, rhel.ssh_service) == ("waagent", "sshd")
    assert rhel.registration.tool == "subscription-manager"
    assert suse.registration.tool == "SUSEConnect"
    assert ubuntu.registration is None
    # kernel parameters besides console=ttyS0, as each page lists them
    assert ubuntu.cmdline_extras == ("earlyprintk=ttyS0", "rootdelay=300")
    assert rhel.cmdline_extras == ("earlyprintk=ttyS0", "net.ifnames=0")
    assert suse.cmdline_extras == ("earlyprintk=ttyS0",)
    assert FAMILIES_BY_ID["debian"]().cmdline_extras == Family().cmdline_extras == (
        "earlyprintk=ttyS0", "rootdelay=300", "net.ifnames=0")
    # the rebuilds are RHEL with another name
    for rebuild in ("centos", "almalinux", "rocky", "ol"):
        family = FAMILIES_BY_ID[rebuild]()
        assert isinstance(family, type(rhel)) and family.name == rebuild
