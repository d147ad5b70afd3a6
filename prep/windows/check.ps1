# azlift-script: check
# Gathers the raw facts azlift's readiness checks need and prints them as one JSON
# document. No decisions are made here: azlift maps facts to findings in Python
# (prep/windows/findings.py), where the rules are tested.
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'SilentlyContinue'

# Services whose start types Azure's "Prepare a Windows VHD to upload to Azure" page sets,
# plus the time service, WinRM and the Azure guest agent.
$ServiceNames = @('BFE', 'Dhcp', 'Dnscache', 'IKEEXT', 'iphlpsvc', 'nsi', 'mpssvc', 'RemoteRegistry', 'Netlogon', 'Netman', 'TermService', 'w32time', 'WinRM', 'WindowsAzureGuestAgent', 'RdAgent')
# Answer files Windows Setup picks up implicitly on the next boot.
$UnattendCandidates = @("$env:WINDIR\Panther\Unattend.xml", "$env:WINDIR\Panther\Unattend\Unattend.xml", "$env:WINDIR\Panther\autounattend.xml", "$env:WINDIR\System32\Sysprep\unattend.xml", "$env:WINDIR\System32\Sysprep\autounattend.xml", "$env:SystemDrive\unattend.xml", "$env:SystemDrive\autounattend.xml")

function Get-RegValue([string] $Path, [string] $Name) {
    try { (Get-ItemProperty -Path $Path -Name $Name -ErrorAction Stop).$Name } catch { $null }
}

function Get-BcdEntry([string] $Id) {
    try { (& bcdedit.exe /enum $Id | Out-String) } catch { '' }
}

$identity = [Security.Principal.WindowsIdentity]::GetCurrent()
$principal = New-Object Security.Principal.WindowsPrincipal($identity)
$os = Get-CimInstance -ClassName Win32_OperatingSystem

$bitlocker = [ordered]@{ available = $false }
try {
    $volume = Get-BitLockerVolume -MountPoint $env:SystemDrive -ErrorAction Stop
    $bitlocker = [ordered]@{ available = $true; protection_status = "$($volume.ProtectionStatus)"; volume_status = "$($volume.VolumeStatus)" }
} catch { }

# Both lists or neither: with only the installed list every package would look user-only.
$installed = @()
$provisioned = @()
try {
    $allInstalled = @(Get-AppxPackage -AllUsers -ErrorAction Stop | ForEach-Object {
        [ordered]@{
            name = $_.Name
            full_name = $_.PackageFullName
            is_framework = [bool] $_.IsFramework
            non_removable = [bool] $_.NonRemovable
            signature_kind = "$($_.SignatureKind)"
            users = @($_.PackageUserInformation | Where-Object { "$($_.InstallState)" -eq 'Installed' } | ForEach-Object { "$($_.UserSecurityId.Username)" })
        }
    })
    $provisioned = @(Get-AppxProvisionedPackage -Online -ErrorAction Stop | ForEach-Object { $_.DisplayName })
    $installed = $allInstalled
} catch { $provisioned = @() }

$rdpTcp = 'HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server\WinStations\RDP-Tcp'
$tsPolicy = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services'

$firewallProfiles = @(Get-NetFirewallProfile | ForEach-Object { [ordered]@{ name = "$($_.Name)"; enabled = ("$($_.Enabled)" -eq 'True') } })
$firewallRules = @(Get-NetFirewallRule -Direction Inbound | Where-Object {
        $_.Group -eq '@FirewallAPI.dll,-28752' -or $_.Name -like 'WINRM-HTTP*' -or $_.DisplayGroup -in @('Remote Desktop', 'Windows Remote Management')
    } | ForEach-Object {
        [ordered]@{ name = $_.Name; group = "$($_.Group)"; display_group = "$($_.DisplayGroup)"; enabled = ("$($_.Enabled)" -eq 'True'); profile = "$($_.Profile)"; action = "$($_.Action)" }
    })

$listeners = @()
try {
    $listeners = @(Get-WSManInstance -ResourceURI winrm/config/listener -Enumerate -ErrorAction Stop | ForEach-Object {
        [ordered]@{ transport = "$($_.Transport)"; port = [int] $_.Port; enabled = ("$($_.Enabled)" -eq 'true'); address = "$($_.Address)" }
    })
} catch { }

$services = [ordered]@{}
foreach ($name in $ServiceNames) {
    $service = Get-Service -Name $name -ErrorAction SilentlyContinue
    $services[$name] = if ($service) { "$($service.StartType)" } else { $null }
}

$licensing = Get-CimInstance -ClassName SoftwareLicensingService -ErrorAction SilentlyContinue
$memory = 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager\Memory Management'

$facts = [ordered]@{
    is_admin = $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
    os = [ordered]@{ caption = "$($os.Caption)"; version = "$($os.Version)"; system_drive = "$env:SystemDrive" }
    bitlocker = $bitlocker
    pending_reboot = [ordered]@{
        cbs = (Test-Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending')
        windows_update = (Test-Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired')
        pending_file_renames = @(Get-RegValue 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager' 'PendingFileRenameOperations' | Where-Object { $_ })
    }
    appx = [ordered]@{ installed = $installed; provisioned = $provisioned }
    unattend_files = @($UnattendCandidates | Where-Object { Test-Path -LiteralPath $_ })
    rdp = [ordered]@{
        deny_connections = Get-RegValue 'HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server' 'fDenyTSConnections'
        policy_deny_connections = Get-RegValue $tsPolicy 'fDenyTSConnections'
        port = Get-RegValue $rdpTcp 'PortNumber'
        user_authentication = Get-RegValue $rdpTcp 'UserAuthentication'
        lan_adapter = Get-RegValue $rdpTcp 'LanAdapter'
    }
    firewall = [ordered]@{ profiles = $firewallProfiles; rules = $firewallRules }
    winrm = [ordered]@{ listeners = $listeners }
    san_policy = "$((Get-StorageSetting -ErrorAction SilentlyContinue).NewDiskPolicy)"
    real_time_is_universal = Get-RegValue 'HKLM:\SYSTEM\CurrentControlSet\Control\TimeZoneInformation' 'RealTimeIsUniversal'
    services = $services
    bcd = [ordered]@{ bootmgr = (Get-BcdEntry '{bootmgr}'); default = (Get-BcdEntry '{default}'); emssettings = (Get-BcdEntry '{emssettings}') }
    pagefile = [ordered]@{
        paging_files = @(Get-RegValue $memory 'PagingFiles' | Where-Object { $_ })
        automatic = [bool] (Get-CimInstance -ClassName Win32_ComputerSystem).AutomaticManagedPagefile
    }
    cdrom_start = Get-RegValue 'HKLM:\SYSTEM\CurrentControlSet\Services\cdrom' 'Start'
    rearm = [ordered]@{
        remaining = if ($licensing) { [int] $licensing.RemainingWindowsReArmCount } else { $null }
        skip_rearm = Get-RegValue 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\SoftwareProtectionPlatform' 'SkipRearm'
        generalization_state = Get-RegValue 'HKLM:\SYSTEM\Setup\Status\SysprepStatus' 'GeneralizationState'
    }
    image_state = Get-RegValue 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State' 'ImageState'
}
$facts | ConvertTo-Json -Depth 6 -Compress
# bcdedit fails without elevation and its exit code would outlive it: the script's answer
# is the JSON above (is_admin says whether the facts are complete), so it succeeds.
$global:LASTEXITCODE = 0
