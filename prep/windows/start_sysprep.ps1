# azlift-script: start-sysprep
# Starts Sysprep as the connecting administrator and returns at once: completion is
# detected by polling the image state in separate short calls, never by holding one WinRM
# command open for minutes. Prints one JSON document (what happened, for azlift to judge).
#
# Microsoft does not support Sysprep under the System account (a scheduled task as SYSTEM,
# PsExec -s): images made that way can boot to a black screen on Windows 11 24H2 and Server
# 2025. So Sysprep runs with this session's own token, created by WMI's Win32_Process.Create
# rather than as a child of this shell: WinRM ends every process in the shell's job object
# when the shell closes, and a process WMI creates (asked to break away from any job as
# well) is outside it. No password is handled on the guest.
$ErrorActionPreference = 'Stop'
$sysprep = Join-Path $env:windir 'System32\Sysprep\Sysprep.exe'
$stateKey = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State'
$before = "$((Get-ItemProperty -Path $stateKey -Name ImageState -ErrorAction SilentlyContinue).ImageState)"
$account = [Security.Principal.WindowsIdentity]::GetCurrent().Name
$result = [ordered]@{ image_state_before = $before; account = $account; return_value = $null; process_id = $null; breakaway = $false; running = $false; already_running = $false; removed_task = $false }
# A scheduled task that ran Sysprep as SYSTEM (left by an earlier azlift version) must not
# start it again behind this run's back.
if (Get-ScheduledTask -TaskName 'azlift-sysprep' -ErrorAction SilentlyContinue) {
    Unregister-ScheduledTask -TaskName 'azlift-sysprep' -Confirm:$false
    $result.removed_task = $true
}
# Windows runs one Sysprep at a time; a second one would only fail.
if (Get-Process -Name sysprep -ErrorAction SilentlyContinue) {
    $result.already_running = $true
    $result | ConvertTo-Json -Compress
    exit 0
}
$commandLine = '"' + $sysprep + '" ' + ($SysprepArguments -join ' ')
$startupClass = Get-CimClass -ClassName Win32_ProcessStartup
# CREATE_BREAKAWAY_FROM_JOB (0x01000000), then without it should WMI's own job forbid that.
foreach ($flags in @(16777216, 0)) {
    $startup = New-CimInstance -CimClass $startupClass -ClientOnly -Property @{ CreateFlags = [uint32] $flags; ShowWindow = [uint16] 0 }
    $created = Invoke-CimMethod -ClassName Win32_Process -MethodName Create -Arguments @{ CommandLine = $commandLine; CurrentDirectory = (Split-Path -Path $sysprep); ProcessStartupInformation = $startup }
    $result.return_value = [int] $created.ReturnValue
    if ($result.return_value -eq 0) {
        $result.process_id = [int] $created.ProcessId
        $result.breakaway = ($flags -ne 0)
        break
    }
}
if ($result.return_value -eq 0) {
    Start-Sleep -Seconds 2
    $result.running = [bool] (Get-Process -Id $result.process_id -ErrorAction SilentlyContinue)
}
$result | ConvertTo-Json -Compress
