# azlift-script: check
# Gathers the raw facts azlift's readiness checks need and prints them as one JSON
# document. No decisions are made here: azlift maps facts to findings in Python
# (prep/windows/findings.py), where the rules are tested.
#
# Written for Windows PowerShell 5.1 (powershell.exe over WinRM on Server 2016-2025):
# every value is a fresh string, number, boolean, ordered dictionary or @() array, so
# ConvertTo-Json neither wraps strings in {"value": ...} objects nor collapses lists.
# A query that fails is reported as {"error": ...} in place of its section, never as an
# empty answer: azlift turns it into a "could not check" finding instead of a pass.
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'SilentlyContinue'

# Services whose start types Azure's "Prepare a Windows VHD to upload to Azure" page sets,
# plus the time service, WinRM, the Azure guest agent and the serial console's sacsvr.
$ServiceNames = @('BFE', 'Dhcp', 'Dnscache', 'IKEEXT', 'iphlpsvc', 'nsi', 'mpssvc', 'RemoteRegistry', 'Netlogon', 'Netman', 'TermService', 'w32time', 'WinRM', 'WindowsAzureGuestAgent', 'RdAgent', 'sacsvr')
# Answer files Windows Setup picks up implicitly on the next boot.
$UnattendCandidates = @("$env:WINDIR\Panther\Unattend.xml", "$env:WINDIR\Panther\Unattend\Unattend.xml", "$env:WINDIR\Panther\autounattend.xml", "$env:WINDIR\System32\Sysprep\unattend.xml", "$env:WINDIR\System32\Sysprep\autounattend.xml", "$env:SystemDrive\unattend.xml", "$env:SystemDrive\autounattend.xml")
# The Remote Desktop firewall group by its resource string, the same in every language.
$RdpFirewallGroup = '@FirewallAPI.dll,-28752'

# Registry reads that failed for a reason other than "not there" (access denied, ...).
$ReadErrors = [ordered]@{}

function Get-RegValue([string] $Path, [string] $Name) {
    # Nothing is output when the key or value does not exist; a failed read is recorded.
    if (-not (Test-Path -LiteralPath $Path)) { return }
    try {
        $item = Get-ItemProperty -LiteralPath $Path -ErrorAction Stop
    } catch {
        $ReadErrors["$Path\$Name"] = "$($_.Exception.Message)"
        return
    }
    $item.$Name
}

function Get-Fact([scriptblock] $Query) {
    # One section of facts; any error inside it replaces the section with its reason.
    # Cmdlets that are functions of script or CDXML modules (NetSecurity, Appx, BitLocker,
    # Storage) do not see this preference, so each call also says -ErrorAction Stop.
    $ErrorActionPreference = 'Stop'
    try {
        & $Query
    } catch {
        [ordered]@{ error = "$($_.Exception.Message)"; error_id = "$($_.FullyQualifiedErrorId)"; command = "$($_.InvocationInfo.MyCommand.Name)" }
    }
}

function Get-BcdEntry([string] $Id) {
    try {
        $text = & bcdedit.exe /enum $Id | Out-String
    } catch {
        return [ordered]@{ error = "$($_.Exception.Message)" }
    }
    if ($LASTEXITCODE -ne 0) { return [ordered]@{ error = "bcdedit /enum $Id exited with $LASTEXITCODE`: $("$text".Trim())" } }
    "$text"
}

function Test-Administrator {
    try {
        $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
        return (New-Object Security.Principal.WindowsPrincipal($identity)).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
    } catch {
        # Constrained Language Mode forbids those .NET types; whoami lists the token's
        # groups, and S-1-16-12288 is the high (elevated) mandatory level.
        try { return [bool] (& whoami.exe /groups | Select-String -SimpleMatch 'S-1-16-12288') } catch { return $null }
    }
}

$rdpTcp = 'HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server\WinStations\RDP-Tcp'
$tsPolicy = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services'
$sessionManager = 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager'
$cbs = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing'
$memory = "$sessionManager\Memory Management"
$removableStorage = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows\RemovableStorageDevices'

$os = Get-Fact {
    $info = Get-CimInstance -ClassName Win32_OperatingSystem -ErrorAction Stop
    [ordered]@{ caption = "$($info.Caption)"; version = "$($info.Version)"; product_type = [int] $info.ProductType; system_drive = "$env:SystemDrive"; windows_dir = "$env:WINDIR" }
}

$bitlocker = Get-Fact {
    if (-not (Get-Command -Name Get-BitLockerVolume -ErrorAction SilentlyContinue)) { return [ordered]@{ available = $false } }
    $volume = Get-BitLockerVolume -MountPoint $env:SystemDrive -ErrorAction Stop
    [ordered]@{ available = $true; protection_status = "$($volume.ProtectionStatus)"; volume_status = "$($volume.VolumeStatus)" }
}

# Both lists or neither: with only the installed list every package would look user-only.
# Bundles are listed too: a provisioned app's PackageName is its bundle's full name.
$appx = Get-Fact {
    $installed = @(Get-AppxPackage -AllUsers -PackageTypeFilter @('Main', 'Bundle') -ErrorAction Stop | ForEach-Object {
            [ordered]@{
                name = "$($_.Name)"
                full_name = "$($_.PackageFullName)"
                is_bundle = [bool] $_.IsBundle
                is_framework = [bool] $_.IsFramework
                non_removable = [bool] $_.NonRemovable
                signature_kind = "$($_.SignatureKind)"
                users = @($_.PackageUserInformation | Where-Object { "$($_.InstallState)" -eq 'Installed' } | ForEach-Object {
                        if ($_.UserSecurityId.Username) { "$($_.UserSecurityId.Username)" } else { "$($_.UserSecurityId.Sid)" }
                    })
            }
        })
    $provisioned = @(Get-AppxProvisionedPackage -Online -ErrorAction Stop | ForEach-Object { [ordered]@{ name = "$($_.DisplayName)"; package_name = "$($_.PackageName)" } })
    [ordered]@{ installed = $installed; provisioned = $provisioned }
}

$listeners = Get-Fact {
    [ordered]@{ listeners = @(Get-WSManInstance -ResourceURI winrm/config/listener -Enumerate -ErrorAction Stop | ForEach-Object {
                [ordered]@{ transport = "$($_.Transport)"; port = "$($_.Port)"; enabled = ("$($_.Enabled)" -eq 'true'); address = "$($_.Address)" }
            })
    }
}

# The effective rules (ActiveStore: local and Group Policy). Rules are matched by their
# locale-independent Name or Group and by their port and address filters, never by the
# display names, which are translated. Filters are read once and joined on InstanceID.
$firewall = Get-Fact {
    $ports = @{}
    Get-NetFirewallPortFilter -All -PolicyStore ActiveStore -ErrorAction Stop | ForEach-Object { $ports["$($_.InstanceID)"] = $_ }
    $addresses = @{}
    Get-NetFirewallAddressFilter -All -PolicyStore ActiveStore -ErrorAction Stop | ForEach-Object { $addresses["$($_.InstanceID)"] = $_ }
    $profiles = @(Get-NetFirewallProfile -PolicyStore ActiveStore -ErrorAction Stop | ForEach-Object {
            [ordered]@{ name = "$($_.Name)"; enabled = ("$($_.Enabled)" -eq 'True'); default_inbound = "$($_.DefaultInboundAction)"; default_outbound = "$($_.DefaultOutboundAction)" }
        })
    $rules = @(Get-NetFirewallRule -PolicyStore ActiveStore -ErrorAction Stop | ForEach-Object {
            $port = $ports["$($_.InstanceID)"]
            $address = $addresses["$($_.InstanceID)"]
            $localPorts = @($port.LocalPort | ForEach-Object { "$_" })
            $remoteAddresses = @($address.RemoteAddress | ForEach-Object { "$_" })
            $named = ("$($_.Group)" -eq $RdpFirewallGroup) -or ("$($_.Name)" -like 'WINRM-HTTP*') -or ("$($_.Name)" -eq 'FPS-ICMP4-ERQ-In')
            $byPort = ("$($_.Direction)" -eq 'Inbound') -and (@($localPorts | Where-Object { $_ -match '\d' }).Count -gt 0)
            $byAddress = @($remoteAddresses | Where-Object { $_ -match '\d' }).Count -gt 0
            if ($named -or $byPort -or $byAddress) {
                [ordered]@{
                    name = "$($_.Name)"; display_name = "$($_.DisplayName)"; group = "$($_.Group)"
                    direction = "$($_.Direction)"; enabled = ("$($_.Enabled)" -eq 'True'); action = "$($_.Action)"; profile = "$($_.Profile)"
                    protocol = "$($port.Protocol)"; local_ports = $localPorts; remote_addresses = $remoteAddresses
                }
            }
        })
    [ordered]@{ profiles = $profiles; rules = $rules }
}

$winhttp = Get-Fact {
    $path = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Internet Settings\Connections'
    $value = if (Test-Path -LiteralPath $path) { (Get-ItemProperty -LiteralPath $path -ErrorAction Stop).WinHttpSettings } else { $null }
    [ordered]@{ settings_base64 = if ($null -ne $value) { [Convert]::ToBase64String([byte[]] $value) } else { $null } }
}

$services = [ordered]@{}
foreach ($name in $ServiceNames) {
    $service = Get-Service -Name $name -ErrorAction SilentlyContinue
    $services[$name] = if ($service) { "$($service.StartType)" } else { $null }
}

# Every service and driver by name, to find other hypervisors' guest tools and drivers.
$allServices = Get-Fact {
    [ordered]@{ services = @(Get-CimInstance -ClassName Win32_BaseService -ErrorAction Stop | ForEach-Object { [ordered]@{ name = "$($_.Name)"; start_mode = "$($_.StartMode)" } }) }
}

$programs = Get-Fact {
    $keys = @('HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\*', 'HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall\*')
    [ordered]@{ names = @(Get-ItemProperty -Path $keys -ErrorAction SilentlyContinue | Where-Object { $_.DisplayName } | ForEach-Object { "$($_.DisplayName)" } | Sort-Object -Unique) }
}

# TEMP/TMP as stored (REG_EXPAND_SZ), before expansion.
$temp = Get-Fact {
    $key = Get-Item -LiteralPath "$sessionManager\Environment" -ErrorAction Stop
    [ordered]@{ temp = $key.GetValue('TEMP', $null, 'DoNotExpandEnvironmentNames'); tmp = $key.GetValue('TMP', $null, 'DoNotExpandEnvironmentNames') }
}

$routes = Get-Fact {
    $found = @(Get-NetRoute -PolicyStore PersistentStore -ErrorAction SilentlyContinue -ErrorVariable routeErrors | ForEach-Object {
            [ordered]@{ destination = "$($_.DestinationPrefix)"; next_hop = "$($_.NextHop)"; interface = "$($_.InterfaceAlias)" }
        })
    $failures = @($routeErrors | Where-Object { "$($_.FullyQualifiedErrorId)" -notlike 'CmdletizationQuery_NotFound*' })
    if ($failures.Count -gt 0) { throw $failures[0] }
    [ordered]@{ routes = $found }
}

$scriptBlocking = Get-Fact {
    if (-not (Get-Command -Name Get-MpPreference -ErrorAction SilentlyContinue)) { return [ordered]@{ available = $false } }
    $preference = Get-MpPreference -ErrorAction Stop
    [ordered]@{
        available = $true
        asr_rule_ids = @($preference.AttackSurfaceReductionRules_Ids | ForEach-Object { "$_" })
        asr_rule_actions = @($preference.AttackSurfaceReductionRules_Actions | ForEach-Object { "$_" })
    }
}

$storage = Get-Fact { [ordered]@{ new_disk_policy = "$((Get-StorageSetting -ErrorAction Stop).NewDiskPolicy)" } }

$rearm = Get-Fact {
    $licensing = Get-CimInstance -ClassName SoftwareLicensingService -ErrorAction Stop
    [ordered]@{
        remaining = [int] $licensing.RemainingWindowsReArmCount
        skip_rearm = Get-RegValue 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\SoftwareProtectionPlatform' 'SkipRearm'
        generalization_state = Get-RegValue 'HKLM:\SYSTEM\Setup\Status\SysprepStatus' 'GeneralizationState'
    }
}

$pagefile = Get-Fact {
    [ordered]@{
        paging_files = @(Get-RegValue $memory 'PagingFiles' | Where-Object { $_ })
        automatic = [bool] (Get-CimInstance -ClassName Win32_ComputerSystem -ErrorAction Stop).AutomaticManagedPagefile
    }
}

$facts = [ordered]@{
    is_admin = Test-Administrator
    language_mode = "$($ExecutionContext.SessionState.LanguageMode)"
    lockdown_policy = Get-RegValue "$sessionManager\Environment" '__PSLockdownPolicy'
    script_blocking = $scriptBlocking
    os = $os
    bitlocker = $bitlocker
    pending_reboot = [ordered]@{
        cbs = (Test-Path -LiteralPath "$cbs\RebootPending")
        cbs_reboot_in_progress = (Test-Path -LiteralPath "$cbs\RebootInProgress")
        cbs_packages_pending = (Test-Path -LiteralPath "$cbs\PackagesPending")
        windows_update = (Test-Path -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired')
        # Pairs of (source, destination); an empty destination means "delete the source".
        pending_file_renames = @(Get-RegValue $sessionManager 'PendingFileRenameOperations')
        pending_file_renames_2 = @(Get-RegValue $sessionManager 'PendingFileRenameOperations2')
        active_computer_name = Get-RegValue 'HKLM:\SYSTEM\CurrentControlSet\Control\ComputerName\ActiveComputerName' 'ComputerName'
        computer_name = Get-RegValue 'HKLM:\SYSTEM\CurrentControlSet\Control\ComputerName\ComputerName' 'ComputerName'
        netlogon_join_domain = $null -ne (Get-RegValue 'HKLM:\SYSTEM\CurrentControlSet\Services\Netlogon' 'JoinDomain')
        netlogon_avoid_spn_set = $null -ne (Get-RegValue 'HKLM:\SYSTEM\CurrentControlSet\Services\Netlogon' 'AvoidSpnSet')
    }
    appx = $appx
    unattend_files = @($UnattendCandidates | Where-Object { Test-Path -LiteralPath $_ })
    rdp = [ordered]@{
        deny_connections = Get-RegValue 'HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server' 'fDenyTSConnections'
        policy_deny_connections = Get-RegValue $tsPolicy 'fDenyTSConnections'
        port = Get-RegValue $rdpTcp 'PortNumber'
        user_authentication = Get-RegValue $rdpTcp 'UserAuthentication'
        lan_adapter = Get-RegValue $rdpTcp 'LanAdapter'
        keep_alive_enable = Get-RegValue $tsPolicy 'KeepAliveEnable'
        keep_alive_interval = Get-RegValue $tsPolicy 'KeepAliveInterval'
        keep_alive_timeout = Get-RegValue $rdpTcp 'KeepAliveTimeout'
        disable_auto_reconnect = Get-RegValue $tsPolicy 'fDisableAutoReconnect'
        inherit_reconnect_same = Get-RegValue $rdpTcp 'fInheritReconnectSame'
        reconnect_same = Get-RegValue $rdpTcp 'fReconnectSame'
        max_instance_count = Get-RegValue $rdpTcp 'MaxInstanceCount'
        ssl_certificate_hash = $null -ne (Get-RegValue $rdpTcp 'SSLCertificateSHA1Hash')
    }
    firewall = $firewall
    winrm = $listeners
    winhttp = $winhttp
    san_policy = $storage
    real_time_is_universal = Get-RegValue 'HKLM:\SYSTEM\CurrentControlSet\Control\TimeZoneInformation' 'RealTimeIsUniversal'
    services = $services
    all_services = $allServices
    programs = $programs
    temp = $temp
    persistent_routes = $routes
    removable_storage = [ordered]@{
        deny_all = Get-RegValue $removableStorage 'Deny_All'
        cd_dvd_deny_read = Get-RegValue "$removableStorage\{53f56308-b6bf-11d0-94f2-00a0c91efb8b}" 'Deny_Read'
    }
    bcd = [ordered]@{ bootmgr = (Get-BcdEntry '{bootmgr}'); default = (Get-BcdEntry '{default}'); emssettings = (Get-BcdEntry '{emssettings}') }
    pagefile = $pagefile
    cdrom_start = Get-RegValue 'HKLM:\SYSTEM\CurrentControlSet\Services\cdrom' 'Start'
    rearm = $rearm
    image_state = Get-RegValue 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State' 'ImageState'
    read_errors = $ReadErrors
}
$facts | ConvertTo-Json -Depth 10 -Compress
# bcdedit fails without elevation and its exit code would outlive it: the script's answer
# is the JSON above (is_admin says whether the facts are complete), so it succeeds.
$global:LASTEXITCODE = 0
