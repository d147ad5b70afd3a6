# azlift-script: image-state
# One short poll: Windows Setup's image state and whether Sysprep is still running, as JSON.
$state = (Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State' -Name ImageState -ErrorAction SilentlyContinue).ImageState
$running = [bool] (Get-Process -Name sysprep -ErrorAction SilentlyContinue)
[ordered]@{ image_state = "$state"; sysprep_running = $running } | ConvertTo-Json -Compress
