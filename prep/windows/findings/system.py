"""Rules about the platform-facing configuration: SAN policy, clock, services, the Special
Administration Console, boot configuration, page file, CD-ROM and removable storage, other
hypervisors' tools, TEMP and persistent routes."""
from __future__ import annotations

import fnmatch

from ...plan import Finding, Severity
from .shapes import (
    as_int, as_text, could_not_check, error_reason, Facts, new_finding, passed, ps_list,
    ps_value, read_section,
)


AUTOMATIC_SERVICES = ("BFE", "Dhcp", "Dnscache", "IKEEXT", "iphlpsvc", "nsi", "mpssvc",
                      "RemoteRegistry", "w32time")

MANUAL_SERVICES = ("Netlogon", "Netman", "TermService")

BCD_EXPECTED = {
    "bootmgr": {"integrityservices": "Enable", "displaybootmenu": "Yes", "timeout": "5",
                "bootems": "Yes"},
    "default": {"device": "partition=C:", "osdevice": "partition=C:",
                "integrityservices": "Enable", "recoveryenabled": "No",
                "bootstatuspolicy": "IgnoreAllFailures", "ems": "Yes"},
    "emssettings": {"emsport": "1", "emsbaudrate": "115200"},
}

BCD_FIX = {
    ("bootmgr", "integrityservices"): 'bcdedit /set "{bootmgr}" integrityservices enable',
    ("bootmgr", "displaybootmenu"): 'bcdedit /set "{bootmgr}" displaybootmenu yes',
    ("bootmgr", "timeout"): 'bcdedit /set "{bootmgr}" timeout 5',
    ("bootmgr", "bootems"): 'bcdedit /set "{bootmgr}" bootems yes',
    ("default", "device"): 'bcdedit /set "{default}" device partition=C:',
    ("default", "osdevice"): 'bcdedit /set "{default}" osdevice partition=C:',
    ("default", "integrityservices"): 'bcdedit /set "{default}" integrityservices enable',
    ("default", "recoveryenabled"): 'bcdedit /set "{default}" recoveryenabled Off',
    ("default", "bootstatuspolicy"): 'bcdedit /set "{default}" bootstatuspolicy IgnoreAllFailures',
    ("default", "ems"): 'bcdedit /ems "{current}" ON',
    ("emssettings", "emsport"): "bcdedit /emssettings EMSPORT:1 EMSBAUDRATE:115200",
    ("emssettings", "emsbaudrate"): "bcdedit /emssettings EMSPORT:1 EMSBAUDRATE:115200",
}

CDROM_DISABLED = 4

# Other hypervisors' guest tools and drivers that Azure's page says to remove, by the
# names their installers and services register (all lower case).
VIRTUALIZATION_PROGRAMS = (
    "vmware tools*", "*virtualbox guest additions*", "parallels tools*",
    "*xenserver*tools*", "citrix vm tools*", "xcp-ng*tools*", "qemu guest agent*",
    "virtio-win*",
)

VIRTUALIZATION_SERVICES = {
    "vmware": ("vmtools", "vgauthservice", "vm3dservice", "vmci", "vm3dmp", "vmhgfs",
               "vmmouse", "vmusbmouse", "vmxnet3ndis6", "vmxnet3", "pvscsi", "vsock",
               "vmrawdsk", "vmmemctl", "vmvss"),
    "VirtualBox": ("vboxservice", "vboxguest", "vboxmouse", "vboxsf", "vboxvideo",
                   "vboxwddm"),
    "Xen": ("xenbus", "xenvbd", "xennet", "xenfilt", "xeniface", "xenvif", "xensvc"),
    "Parallels": ("prl_tools", "prl_tools_service", "prl_fs", "prl_tg", "prl_eth5"),
    "QEMU/KVM": ("qemu-ga", "vioscsi", "viostor", "netkvm", "balloon", "vioser"),
}

ENVIRONMENT = "HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Environment"

REMOVABLE_STORAGE = "HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows\\RemovableStorageDevices"

def check_san_policy(facts: Facts) -> list[Finding]:
    raw = ps_value(facts.get("san_policy"))
    fix = "diskpart: 'san policy=onlineall' (or Set-StorageSetting -NewDiskPolicy OnlineAll)"
    if isinstance(raw, dict):
        info, reason = read_section(facts, "san_policy")
        if reason:
            return could_not_check("san_policy", "the disk SAN policy", reason, fix)
        raw = info.get("new_disk_policy")
    policy = as_text(raw)
    if policy.lower() == "onlineall":
        return passed("san_policy", "SAN policy is OnlineAll")
    return [new_finding("san_policy", Severity.WARNING,
                     f"the disk SAN policy is {policy or 'unknown'}, not OnlineAll; data disks "
                     "may stay offline in Azure", fix)]

def check_real_time_is_universal(facts: Facts) -> list[Finding]:
    if as_int(facts.get("real_time_is_universal")) == 1:
        return passed("real_time_is_universal", "the hardware clock is read as UTC")
    return [new_finding("real_time_is_universal", Severity.WARNING,
                     "RealTimeIsUniversal is not 1: Azure's host clock is UTC and the guest "
                     "time will be off",
                     "Set-ItemProperty -Path HKLM:\\SYSTEM\\CurrentControlSet\\Control\\"
                     "TimeZoneInformation -Name RealTimeIsUniversal -Value 1 -Type DWord "
                     "-Force")]

def check_services(facts: Facts) -> list[Finding]:
    services = ps_value(facts.get("services")) or {}
    wrong, fixes = [], []
    for names, expected in ((AUTOMATIC_SERVICES, "Automatic"), (MANUAL_SERVICES, "Manual")):
        for name in names:
            actual = ps_value(services.get(name))
            if actual is None:
                wrong.append(f"{name} missing (expected {expected})")
            elif str(actual).lower() != expected.lower():
                wrong.append(f"{name} {actual} (expected {expected})")
                fixes.append(f"Set-Service -Name {name} -StartupType {expected}")
    if not wrong:
        return passed("services", "service start types match Azure's page")
    return [new_finding("services", Severity.WARNING,
                     "service start types differ from Azure's page: " + "; ".join(wrong),
                     "; ".join(fixes) if fixes else
                     "reinstall or repair the missing Windows services Azure's page lists")]

def check_sacsvr(facts: Facts) -> list[Finding]:
    """The Special Administration Console Helper, for Azure's serial console."""
    services = ps_value(facts.get("services")) or {}
    if "sacsvr" not in services:
        return could_not_check("sacsvr", "the sacsvr service", "the check script did not report it",
                          "Get-Service -Name sacsvr", Severity.INFO)
    start = as_text(services.get("sacsvr"))
    if start.lower() == "automatic":
        return passed("sacsvr", "sacsvr (serial console) starts automatically")
    fix = "Set-Service -Name sacsvr -StartupType Automatic"
    os_info, error_reason = read_section(facts, "os")
    if not start and as_int(os_info.get("product_type")) == 1:
        fix = ("Add-WindowsCapability -Online -Name 'Windows.Desktop.EMS-SAC.Tools~~~~0.0.1.0'; "
               + fix)
    return [new_finding("sacsvr", Severity.INFO,
                     f"the serial console's sacsvr service is {start or 'not installed'}, not "
                     "Automatic; Azure's serial console needs it to troubleshoot the OS", fix)]

def parse_bcdedit(text: str) -> dict[str, str]:
    """``bcdedit /enum`` output → {setting: value} (header and rule lines skipped)."""
    entries: dict[str, str] = {}
    lines = [line.strip() for line in (text or "").splitlines()]
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if not line or set(line) <= {"-"} or (following and set(following) <= {"-"}):
            continue  # blank, a rule line, or the title a rule line underlines
        parts = line.split(None, 1)
        if len(parts) == 2:
            entries.setdefault(parts[0].lower(), parts[1].strip())
    return entries

def check_bcd(facts: Facts) -> list[Finding]:
    bcd = ps_value(facts.get("bcd")) or {}
    failed = {entry: error_reason(ps_value(bcd.get(entry))) for entry in BCD_EXPECTED
              if isinstance(ps_value(bcd.get(entry)), dict)}
    if failed:
        return could_not_check("bcd", "the boot configuration",
                          "; ".join(f"{{{entry}}}: {reason}" for entry, reason in failed.items()),
                          "run 'bcdedit /enum all' as an administrator")
    wrong, fixes = [], []
    for entry, expected in BCD_EXPECTED.items():
        actual = parse_bcdedit(as_text(bcd.get(entry)))
        for key, value in expected.items():
            found = actual.get(key)
            if found is None or found.lower() != value.lower():
                wrong.append(f"{{{entry}}} {key} {found or 'unset'} (expected {value})")
                if BCD_FIX[(entry, key)] not in fixes:
                    fixes.append(BCD_FIX[(entry, key)])
    if not wrong:
        return passed("bcd", "boot configuration matches Azure's page")
    return [new_finding("bcd", Severity.WARNING,
                     "boot configuration differs from Azure's page: " + "; ".join(wrong),
                     "; ".join(fixes))]

def check_pagefile(facts: Facts) -> list[Finding]:
    info, reason = read_section(facts, "pagefile")
    if reason:
        return could_not_check("pagefile", "the page file location", reason,
                          "Get-CimInstance Win32_PageFileSetting", Severity.INFO)
    system_drive = as_text((ps_value(facts.get("os")) or {}).get("system_drive") or "C:").upper()
    files = [as_text(entry).split()[0] for entry in ps_list(info.get("paging_files"))
             if as_text(entry).strip()]
    elsewhere = [f for f in files if not f.upper().startswith(system_drive)
                 and not f.startswith("?")]
    if elsewhere:
        return [new_finding("pagefile", Severity.WARNING,
                         "the page file is on a volume outside the OS disk: " + ", ".join(elsewhere)
                         + "; that volume is not part of the uploaded disk",
                         "move the page file to the OS volume before capture; after deployment, "
                         "place it on the temporary disk (D:\\pagefile.sys) as Azure recommends")]
    return [new_finding("pagefile", Severity.INFO,
                     "the page file is on the OS volume" if files or info.get("automatic")
                     else "no page file is configured",
                     "after deployment, Azure recommends D:\\pagefile.sys on the temporary disk")]

def check_cdrom(facts: Facts) -> list[Finding]:
    if "cdrom_start" not in facts:
        return could_not_check("cdrom", "the CD/DVD-ROM driver", "the check script did not report it",
                          "Get-ItemProperty -Path HKLM:\\SYSTEM\\CurrentControlSet\\Services\\"
                          "cdrom -Name Start")
    if as_int(facts.get("cdrom_start")) == CDROM_DISABLED:
        return [new_finding("cdrom", Severity.BLOCKER,
                         "the CD/DVD-ROM driver (cdrom service) is disabled; Azure mounts the "
                         "provisioning ISO there and the VM would stick at OOBE",
                         "Set-ItemProperty -Path HKLM:\\SYSTEM\\CurrentControlSet\\Services\\"
                         "cdrom -Name Start -Value 1 -Type DWord")]
    return passed("cdrom", "the CD/DVD-ROM driver is enabled")

def check_removable_storage(facts: Facts) -> list[Finding]:
    """The generalize page: no "Removable Storage Access: Deny all" policy (OOBE hangs)."""
    info = ps_value(facts.get("removable_storage"))
    if not isinstance(info, dict):
        return could_not_check("removable_storage", "the Removable Storage Access policy",
                          "the check script did not report it",
                          f"Get-ItemProperty -Path '{REMOVABLE_STORAGE}'")
    denied = []
    if as_int(info.get("deny_all")) == 1:
        denied.append("All Removable Storage classes: Deny all access (Deny_All)")
    if as_int(info.get("cd_dvd_deny_read")) == 1:
        denied.append("CD and DVD: Deny read access")
    if not denied:
        return passed("removable_storage", "no policy denies access to removable storage")
    return [new_finding("removable_storage", Severity.BLOCKER,
                     "a Removable Storage Access policy is applied (" + "; ".join(denied)
                     + "): Azure's provisioning ISO cannot be read and the VM sticks at OOBE",
                     "set the policy (Computer Configuration > Administrative Templates > "
                     "System > Removable Storage Access) to Not Configured, locally and in any "
                     "domain GPO, then gpupdate /force; locally: Remove-ItemProperty -Path "
                     f"'{REMOVABLE_STORAGE}' -Name Deny_All")]

def _virtualization_services(facts: Facts) -> list[str]:
    info, error_reason = read_section(facts, "all_services")
    found = []
    for service in ps_list(info.get("services")):
        if not isinstance(service, dict):
            continue
        name = as_text(service.get("name"))
        for vendor, names in VIRTUALIZATION_SERVICES.items():
            if name.lower() in names:
                found.append(f"{name} ({vendor})")
    return found

def check_virtualization_tools(facts: Facts) -> list[Finding]:
    fix = ("uninstall them (Programs and Features, or the vendor's uninstaller) and remove "
           "leftover drivers (pnputil /enum-drivers; pnputil /delete-driver oemNN.inf "
           "/uninstall); on the source hypervisor this can cut the VM's network, so do it "
           "last, from the console")
    programs, program_reason = read_section(facts, "programs")
    _services, service_reason = read_section(facts, "all_services")
    names = [as_text(name) for name in ps_list(programs.get("names"))]
    tools = [name for name in names
             if any(fnmatch.fnmatch(name.lower(), pattern) for pattern in VIRTUALIZATION_PROGRAMS)]
    drivers = _virtualization_services(facts)
    if tools or drivers:
        return [new_finding("virtualization_tools", Severity.WARNING,
                         "other hypervisors' guest tools or drivers are installed (Azure's page: "
                         "uninstall other virtualization software and drivers): "
                         + ", ".join(tools + drivers), fix)]
    if program_reason or service_reason:
        return could_not_check("virtualization_tools", "for other hypervisors' guest tools",
                          "; ".join(r for r in (program_reason, service_reason) if r), fix)
    return passed("virtualization_tools", "no other hypervisor's guest tools or drivers found")

TEMP_DEFAULTS = ("%systemroot%\\temp", "%windir%\\temp")

def check_temp(facts: Facts) -> list[Finding]:
    def fix(name: str) -> str:
        return (f"Set-ItemProperty -Path '{ENVIRONMENT}' -Name {name} -Value "
                "\"%SystemRoot%\\TEMP\" -Type ExpandString -Force")

    info, reason = read_section(facts, "temp")
    if reason:
        return could_not_check("temp", "the TEMP and TMP variables", reason,
                          fix("TEMP") + "; " + fix("TMP"))
    wrong = [(name, as_text(info.get(name.lower()))) for name in ("TEMP", "TMP")
             if as_text(info.get(name.lower())).lower().rstrip("\\") not in TEMP_DEFAULTS]
    if not wrong:
        return passed("temp", "TEMP and TMP are %SystemRoot%\\TEMP")
    return [new_finding("temp", Severity.WARNING,
                     "the system TEMP/TMP variables differ from their defaults: "
                     + "; ".join(f"{name}={value or 'unset'}" for name, value in wrong),
                     "; ".join(fix(name) for name, _value in wrong))]

def check_persistent_routes(facts: Facts) -> list[Finding]:
    info, reason = read_section(facts, "persistent_routes")
    if reason:
        return could_not_check("persistent_routes", "for persistent static routes", reason,
                          "route.exe print (the Persistent Routes section)")
    routes = [r for r in ps_list(info.get("routes")) if isinstance(r, dict)]
    if not routes:
        return passed("persistent_routes", "no persistent static route")
    described = [f"{as_text(r.get('destination'))} via {as_text(r.get('next_hop'))}"
                 + (f" ({as_text(r.get('interface'))})" if r.get("interface") else "")
                 for r in routes]
    commands = [f"route.exe delete {as_text(r.get('destination')).split('/')[0]}"
                for r in routes]
    default = any(as_text(r.get("destination")) in ("0.0.0.0/0", "::/0") for r in routes)
    return [new_finding("persistent_routes", Severity.WARNING,
                     "persistent static routes would follow the image to Azure: "
                     + ", ".join(described)
                     + ("; a persistent default route means a static IP configuration, and "
                        "Azure assigns addresses by DHCP" if default else ""),
                     "; ".join(dict.fromkeys(commands))
                     + ("; Set-NetIPInterface -Dhcp Enabled (from the console)" if default
                        else ""))]
