# azlift-script: start-sysprep
# Starts Sysprep and returns at once: completion is detected by polling the image state in
# separate short calls, never by holding one WinRM command open for minutes. Sysprep runs
# as a one-off scheduled task because WinRM ends every process of its shell's job object
# when the shell closes; the shutdown script removes the task again.
$ErrorActionPreference = 'Stop'
$TaskName = 'azlift-sysprep'
$sysprep = Join-Path $env:WINDIR 'System32\Sysprep\Sysprep.exe'
Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false -ErrorAction SilentlyContinue
$action = New-ScheduledTaskAction -Execute $sysprep -Argument ($SysprepArguments -join ' ') -WorkingDirectory (Split-Path $sysprep)
$principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
Register-ScheduledTask -TaskName $TaskName -Action $action -Principal $principal -Force | Out-Null
Start-ScheduledTask -TaskName $TaskName
"started Sysprep.exe $($SysprepArguments -join ' ') as scheduled task $TaskName"
