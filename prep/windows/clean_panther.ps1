# azlift-script: clean-panther
# Azure's preparation page: delete the Panther directory (C:\Windows\Panther) before
# Sysprep, so old answer files and logs neither reach the image nor mislead diagnosis.
# Sysprep appends to its own logs in System32\Sysprep\Panther: the ones an earlier run left
# are removed too, so a failure message quotes this run's errors only.
$ErrorActionPreference = 'Stop'
$panther = Join-Path $env:WINDIR 'Panther'
if (Test-Path -LiteralPath $panther) {
    Remove-Item -LiteralPath $panther -Recurse -Force
    "removed $panther"
} else {
    "absent $panther"
}
$sysprepLogs = Join-Path $env:WINDIR 'System32\Sysprep\Panther'
foreach ($log in @('setuperr.log', 'setupact.log')) {
    $path = Join-Path $sysprepLogs $log
    if (Test-Path -LiteralPath $path) {
        Remove-Item -LiteralPath $path -Force
        "removed $path"
    }
}
