# azlift-script: clean-panther
# Azure's preparation page: delete the Panther directory (C:\Windows\Panther) before
# Sysprep, so old answer files and logs neither reach the image nor mislead diagnosis.
$ErrorActionPreference = 'Stop'
$panther = Join-Path $env:WINDIR 'Panther'
if (Test-Path -LiteralPath $panther) {
    Remove-Item -LiteralPath $panther -Recurse -Force
    "removed $panther"
} else {
    "absent $panther"
}
