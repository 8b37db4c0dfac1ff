<#
.SYNOPSIS
  Installs the Dovetail agent as a Windows service (run as Administrator).
.DESCRIPTION
  Registers "DovetailAgent" to run `node agent\bin\dovetail-agent.js run --config <Config>`
  under a dedicated virtual account, restarts it on failure, and restricts the data
  directory (private key, buffer) to that account and Administrators.
.EXAMPLE
  .\install-agent-service.ps1 -InstallDir "C:\Program Files\Dovetail" -Config "C:\ProgramData\Dovetail\agent.yaml"
#>
param(
  [Parameter(Mandatory = $true)][string]$InstallDir,
  [Parameter(Mandatory = $true)][string]$Config,
  [string]$DataDir = "C:\ProgramData\Dovetail\agent-data",
  [string]$ServiceName = "DovetailAgent"
)
$ErrorActionPreference = "Stop"
$node = (Get-Command node.exe).Source
$entry = Join-Path $InstallDir "agent\bin\dovetail-agent.js"
if (-not (Test-Path $entry)) { throw "not found: $entry (run 'npm ci --omit=dev' in $InstallDir first)" }
New-Item -ItemType Directory -Force -Path $DataDir | Out-Null
$account = "NT SERVICE\$ServiceName"
$binPath = "`"$node`" `"$entry`" run --config `"$Config`""
New-Service -Name $ServiceName -BinaryPathName $binPath -DisplayName "Dovetail agent" -StartupType Automatic -Description "Captures ERP database changes and pushes them to the Dovetail hub (outbound only)."
sc.exe config $ServiceName obj= $account | Out-Null
sc.exe failure $ServiceName reset= 86400 actions= restart/5000/restart/5000/restart/30000 | Out-Null
# Only the service account and Administrators may read the data directory (private key, buffer).
icacls $DataDir /inheritance:r /grant:r "${account}:(OI)(CI)M" "Administrators:(OI)(CI)F" | Out-Null
Write-Host "Installed $ServiceName. Enroll first: node `"$entry`" enroll --config `"$Config`" --hub https://HUB --token TOKEN"
Write-Host "Then: Start-Service $ServiceName"
