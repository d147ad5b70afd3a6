# azlift-script: shutdown
# Shuts the generalized guest down for capture. The WinRM connection drops while Windows
# shuts down; azlift expects that and then waits for the host to stop answering.
# shutdown.exe exits 1115 when a shutdown is already under way (an earlier attempt whose
# answer was lost): the guest is going down either way, so that counts as accepted.
& shutdown.exe /s /t 0 /f /d p:4:1 /c 'azlift: generalized by Sysprep, shutting down for capture'
exit $LASTEXITCODE
