# azlift-script: fetch-logs
# Sysprep's own account of a failure: all of setuperr.log and the tail of setupact.log.
# Both are joined into new strings: a string straight from Get-Content carries PSPath and
# its other note properties, and Windows PowerShell 5.1's ConvertTo-Json then writes it as
# an object ({"value": ..., "PSPath": ...}) instead of a string.
$panther = Join-Path $env:windir 'System32\Sysprep\Panther'
$errors = Join-Path $panther 'setuperr.log'
$actions = Join-Path $panther 'setupact.log'
[ordered]@{
    setuperr = if (Test-Path -LiteralPath $errors) { (Get-Content -LiteralPath $errors) -join "`n" } else { $null }
    setupact_tail = if (Test-Path -LiteralPath $actions) { (Get-Content -LiteralPath $actions -Tail $TailLines) -join "`n" } else { $null }
} | ConvertTo-Json -Compress
