# azlift-script: start-sysprep
# Starts Sysprep detached and returns at once: completion is detected by polling the image
# state in separate short calls, never by holding one WinRM command open for minutes.
$ErrorActionPreference = 'Stop'
$sysprep = Join-Path $env:WINDIR 'System32\Sysprep\Sysprep.exe'
$process = Start-Process -FilePath $sysprep -ArgumentList $SysprepArguments -WorkingDirectory (Split-Path $sysprep) -PassThru
"started Sysprep.exe $($SysprepArguments -join ' ') as process $($process.Id)"
