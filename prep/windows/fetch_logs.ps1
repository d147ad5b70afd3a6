# azlift-script: fetch-logs
# Sysprep's own account of a failure: all of setuperr.log and the tail of setupact.log.
$panther = Join-Path $env:WINDIR 'System32\Sysprep\Panther'
$errors = Join-Path $panther 'setuperr.log'
$actions = Join-Path $panther 'setupact.log'
[ordered]@{
    setuperr = if (Test-Path -LiteralPath $errors) { Get-Content -LiteralPath $errors -Raw } else { $null }
    setupact_tail = if (Test-Path -LiteralPath $actions) { (Get-Content -LiteralPath $actions -Tail $TailLines) -join "`n" } else { $null }
} | ConvertTo-Json -Compress
