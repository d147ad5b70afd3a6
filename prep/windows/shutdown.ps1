# azlift-script: shutdown
# Powers the generalized guest off for capture, after removing the task that ran Sysprep.
# The WinRM connection drops while Windows shuts down; azlift expects that and then waits
# for the host to stop answering.
Unregister-ScheduledTask -TaskName 'azlift-sysprep' -Confirm:$false -ErrorAction SilentlyContinue
& shutdown.exe /s /t 0 /f /d p:4:1 /c 'azlift: generalized by Sysprep, powering off for capture'
exit $LASTEXITCODE
