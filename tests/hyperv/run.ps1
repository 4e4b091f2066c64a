#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    hyperv-vss on a real Hyper-V host: builds FreeBSD Gen2 boxes with the
    package and our kernel module, takes production checkpoints and backup
    snapshots, checks the guest, cleans up. The one entry point of
    tests/hyperv (see README.md there).

.DESCRIPTION
    Run it from an elevated prompt with Windows PowerShell 5.1 or PowerShell 7:
        powershell -ExecutionPolicy Bypass -File .\tests\hyperv\run.ps1
    (pwsh instead of powershell for PowerShell 7). -ExecutionPolicy Bypass
    applies to this one process: Windows clients default to Restricted,
    which refuses every script.

    1. Preflight: Hyper-V cmdlets, packer, vagrant, git, the switch, the
       package, LF line endings in the files the guest reads.
    2. Build (unless -SkipBuild): `git archive` of the checkout (always LF),
       then Packer builds output\hyperv-vss-freebsd-<ufs|zfs>.box from packer\.
    3. For each root filesystem: vagrant up, Set-VM -CheckpointType
       ProductionOnly, the host's VSS integration service enabled and OK,
       the scenarios, then the VM deleted with its checkpoints (also when
       a scenario or the script fails).
    4. Print a summary table. Exit status ($ExitStatus below, README.md):
       0 every scenario passed, 1 a scenario (or the cleanup) failed,
       2 the setup failed (preflight, build, vagrant up, the VSS
       integration service of a VM): some scenarios could not run.

    Scenarios (machine):
      ufs-root         (ufs) Checkpoint-VM; daemon status and syslog show
                             FREEZE and THAW; a marker written just before
                             is in the checkpoint (restore and look), and
                             the control: without a freeze it would not be
      ufs-wmi-backup   (ufs) Msvm_VirtualSystemSnapshotService.CreateSnapshot,
                             type 32768, application-consistent
      ufs-second-disk  (ufs) hot-added second UFS disk: both filesystems
                             frozen, the marker on each is in the checkpoint
      app              (ufs) hv_vss_app registered: runs its freeze and thaw
                             commands, in that order, once each
      app-veto         (ufs) hv_vss_app failing its freeze command: the
                             checkpoint fails, nothing stays frozen
      daemon-stopped   (ufs) no daemon: ProductionOnly checkpoint fails
                             cleanly, guest writable, works again after restart
      zfs-root         (zfs) as ufs-root, root on ZFS (zpool sync path),
                             with ZFS's own commits held off during the cycle
      zfs-wmi-backup   (zfs) as ufs-wmi-backup, root on ZFS

.PARAMETER Package
    hyperv-vss-<version>.pkg built by `bash scripts/build-pkg` (on Linux or
    WSL). Default: the newest dist\hyperv-vss-*.pkg of the checkout.

.PARAMETER RootFs
    Which machines to test: ufs, zfs or both (default).

.PARAMETER DistSite
    Directory holding src.txz of the release the ISO installs, for a mirror
    or a custom ISO. Default: from the ISO itself when it carries src.txz,
    else the running release's directory on download.freebsd.org. Either
    way the guest checks that the sources are its kernel's release.

.PARAMETER PortsBranch
    Ports branch for the kmod port's build framework. Default: the branch
    the guest's pkg repository is built from (this quarter's for quarterly).

.PARAMETER SkipBuild
    Use the boxes already in output\ instead of running Packer.

.PARAMETER KeepBoxes
    Leave the boxes added to Vagrant (hyperv-vss/freebsd-*) in place.

.EXAMPLE
    PS> powershell -ExecutionPolicy Bypass -File .\tests\hyperv\run.ps1
.EXAMPLE
    PS> powershell -ExecutionPolicy Bypass -File .\tests\hyperv\run.ps1 -RootFs ufs -SkipBuild -KeepBoxes
#>
[CmdletBinding()]
param(
    [string] $Package,
    [ValidateSet('ufs', 'zfs')]
    [string[]] $RootFs = @('ufs', 'zfs'),
    [string] $SwitchName = 'Default Switch',
    [string] $IsoUrl,
    [string] $IsoChecksum,
    [string] $DistSite,
    [string] $PortsBranch,
    [switch] $SkipBuild,
    [switch] $KeepBoxes,
    [ValidateRange(1024, 65536)]
    [int] $MemoryMB = 2048,
    [ValidateRange(1, 64)]
    [int] $Cpus = 2,
    [ValidateRange(30, 3600)]
    [int] $CheckpointTimeoutSec = 300,
    [ValidateRange(60, 3600)]
    [int] $BootTimeoutSec = 600,
    [ValidateRange(1024, 65000)]
    [int] $HttpPort = 8870
)

Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

$Here = $PSScriptRoot
$Repo = (Resolve-Path (Join-Path $Here '..\..')).Path
$Out = Join-Path $Here 'output'
$RunId = Get-Date -Format 'yyyyMMddHHmmss'
$GuestHelper = '/usr/local/libexec/hvvss-test/hvvss-test.sh'
$VirtNamespace = 'root\virtualization\v2'
$FirewallRule = "hyperv-vss packer http $RunId"

# Exit status, as README.md documents it; Get-ExitStatus picks one.
$ExitStatus = @{ Passed = 0; ScenarioFailed = 1; SetupFailed = 2 }

# Files the guest reads from this checkout (Packer serves or uploads them;
# the rest goes in the git archive below). A CR in any of them breaks the
# guest: `case ... in\r` is a sh syntax error.
$GuestReadFiles = @('packer\http\installerconfig', 'expected-files', 'guest\*.sh')

# `git archive` writes files the way a checkout would, core.autocrlf
# included (CRLF with Git for Windows' default); these options make it
# write LF whatever the configuration or the archived commit's
# .gitattributes say. ci/check_line_endings.py runs git with them.
$GitArchiveOptions = @('-c', 'core.autocrlf=false', '-c', 'core.eol=lf')

# The VMBus class of the VSS channel in the guest's `devinfo -v`, for the
# hint printed when the host sees no guest driver (guest/lib.sh).
$VssClassId = '35fa2e29-ea23-4236-96ae-3a6ebacba440'

# One row per scenario, and per failed setup or cleanup step, for the
# summary table and the exit status: Phase is 'setup', 'scenario' or 'cleanup'.
$Results = New-Object System.Collections.Generic.List[object]

function Add-Result {
    param([string] $Phase, [string] $Name, [string] $Result, [int] $Seconds = 0, [string] $Detail)
    $Results.Add([pscustomobject]@{ Phase = $Phase; Scenario = $Name; Result = $Result; Seconds = $Seconds; Detail = $Detail })
}

# 2 when any setup step failed (some scenarios never ran), else 1 when a
# scenario or a cleanup failed, else 0; 2 too when no scenario ran at all.
function Get-ExitStatus {
    $failed = @($Results | Where-Object { $_.Result -ne 'PASS' })
    if (@($failed | Where-Object { $_.Phase -eq 'setup' }).Count -gt 0) { return $ExitStatus.SetupFailed }
    if (@($Results | Where-Object { $_.Phase -eq 'scenario' }).Count -eq 0) { return $ExitStatus.SetupFailed }
    if ($failed.Count -gt 0) { return $ExitStatus.ScenarioFailed }
    $ExitStatus.Passed
}

function Write-Step([string] $Text) {
    Write-Host "==> $Text" -ForegroundColor Cyan
}

# Runs a native program, returns its exit code and its output (stdout and
# stderr, as text). Windows PowerShell turns redirected stderr lines into
# errors, which $ErrorActionPreference = 'Stop' would throw on: relax it here.
function Invoke-Native {
    param(
        [Parameter(Mandatory)] [string] $FilePath,
        [string[]] $ArgumentList = @(),
        [switch] $AllowFailure
    )
    $saved = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try {
        $lines = & $FilePath @ArgumentList 2>&1 | ForEach-Object { "$_" }
        $code = $LASTEXITCODE
    }
    finally {
        $ErrorActionPreference = $saved
    }
    $text = (@($lines) -join "`n").Trim()
    Write-Verbose "$FilePath $($ArgumentList -join ' ') -> $code`n$text"
    if ($code -ne 0 -and -not $AllowFailure) {
        throw "'$FilePath $($ArgumentList -join ' ')' exited with $code`n$text"
    }
    [pscustomobject]@{ ExitCode = $code; Output = $text }
}

# Runs a long native command with its output on the console.
function Invoke-Streaming([string] $FilePath, [string[]] $ArgumentList) {
    & $FilePath @ArgumentList
    if ($LASTEXITCODE -ne 0) {
        throw "'$FilePath $($ArgumentList -join ' ')' exited with $LASTEXITCODE"
    }
}

# Runs a guest helper subcommand as root through `vagrant ssh`.
function Invoke-Guest {
    param(
        [Parameter(Mandatory)] [string] $Machine,
        [Parameter(Mandatory)] [string] $Command,
        [switch] $AllowFailure
    )
    Invoke-Native -FilePath 'vagrant' -AllowFailure:$AllowFailure `
        -ArgumentList @('ssh', $Machine, '--no-tty', '-c', "sudo $GuestHelper $Command")
}

# Waits until `vagrant ssh` works (after a start or a checkpoint restore).
function Wait-Guest([string] $Machine) {
    $deadline = (Get-Date).AddSeconds($BootTimeoutSec)
    while ($true) {
        $probe = Invoke-Native -FilePath 'vagrant' -ArgumentList @('ssh', $Machine, '--no-tty', '-c', 'true') -AllowFailure
        if ($probe.ExitCode -eq 0) { return }
        if ((Get-Date) -gt $deadline) {
            throw "the $Machine guest did not answer over ssh within $BootTimeoutSec s: $($probe.Output)"
        }
        Start-Sleep -Seconds 5
    }
}

# The host's side of the VSS channel, checked before anything is blamed on
# the guest: the VM's VSS integration service must be enabled, and its
# primary status OK, which Hyper-V reports once the guest's driver has
# connected to the channel ("No Contact" until then). Waits for it after a
# boot. Get-VMIntegrationService -Name VSS as in Microsoft's cmdlet
# reference; PrimaryOperationalStatus is an enum, compared by name.
function Wait-VssIntegration([string] $VMName) {
    $deadline = (Get-Date).AddSeconds($BootTimeoutSec)
    while ($true) {
        $vss = Get-VMIntegrationService -VMName $VMName -Name 'VSS' -ErrorAction SilentlyContinue
        if ($null -eq $vss) {
            throw "$VMName has no integration service named VSS (Get-VMIntegrationService -VMName $VMName lists them)"
        }
        if (-not $vss.Enabled) {
            throw "the VSS integration service of $VMName is disabled: Enable-VMIntegrationService -VMName $VMName -Name VSS"
        }
        if ($vss.PrimaryOperationalStatus -eq 'Ok') { return }
        if ((Get-Date) -gt $deadline) {
            throw ("the VSS integration service of $VMName reports '$($vss.PrimaryStatusDescription)', not OK, " +
                "$BootTimeoutSec s after boot: the guest's driver did not connect to the VSS channel " +
                "(in the guest: kldstat -n hv_vss_rs.ko; devinfo -v | grep $VssClassId)")
        }
        Start-Sleep -Seconds 5
    }
}

# The daemon's own report (guest/lib.sh: daemon_status -j), parsed.
function Get-DaemonReport([string] $Machine) {
    $r = Invoke-Guest -Machine $Machine -Command 'status' -AllowFailure
    # ssh may add lines of its own ("Connection to ... closed."): keep the object.
    $start = $r.Output.IndexOf('{')
    $end = $r.Output.LastIndexOf('}')
    if ($start -lt 0 -or $end -lt $start) { throw "the daemon's status printed no JSON: $($r.Output)" }
    $report = $r.Output.Substring($start, $end - $start + 1) | ConvertFrom-Json
    if (-not $report.running -or $null -eq $report.status) {
        throw "hv_vssd is not running: $($r.Output)"
    }
    $report
}

# The report once the daemon has recorded the end of the transaction that
# followed $Before (it answers the device, then writes its status file: the
# host can see the answer a moment before the file changes).
function Get-SettledReport([string] $Machine, $Before) {
    $b = $Before.status.counters
    $deadline = (Get-Date).AddSeconds(15)
    while ($true) {
        $report = Get-DaemonReport $Machine
        $a = $report.status.counters
        $ended = ($a.thaw_ok + $a.thaw_failed + $a.freeze_failed + $a.watchdog_thaws) -ne
            ($b.thaw_ok + $b.thaw_failed + $b.freeze_failed + $b.watchdog_thaws)
        if (($ended -and $report.status.state -eq 'idle') -or (Get-Date) -gt $deadline) { return $report }
        Start-Sleep -Seconds 1
    }
}

# FREEZE and THAW both succeeded after $Before: the counters moved by one
# each, the newest transactions say so, nothing is frozen any more.
# Returns "FREEZE <ms> ms, THAW <ms> ms, <n> frozen".
function Assert-FreezeThaw {
    param($Before, $After, [int] $MinFrozen = 0)
    $b = $Before.status.counters
    $a = $After.status.counters
    if ($a.freeze_ok -ne $b.freeze_ok + 1) { throw "freeze_ok went from $($b.freeze_ok) to $($a.freeze_ok), expected +1" }
    if ($a.thaw_ok -ne $b.thaw_ok + 1) { throw "thaw_ok went from $($b.thaw_ok) to $($a.thaw_ok), expected +1" }
    foreach ($counter in 'freeze_failed', 'thaw_failed', 'rollbacks', 'watchdog_thaws') {
        if ($a.$counter -ne $b.$counter) { throw "$counter went from $($b.$counter) to $($a.$counter)" }
    }
    if ($After.status.state -ne 'idle' -or @($After.status.frozen).Count -ne 0) {
        throw "the daemon still reports state '$($After.status.state)', frozen: $($After.status.frozen -join ', ')"
    }
    $recent = @($After.status.recent)
    $freeze = $recent | Where-Object { $_.op -eq 'FREEZE' } | Select-Object -Last 1
    $thaw = $recent | Where-Object { $_.op -eq 'THAW' } | Select-Object -Last 1
    if ($null -eq $freeze -or -not $freeze.success) { throw "no successful FREEZE in the status: $($recent | ConvertTo-Json -Compress)" }
    if ($null -eq $thaw -or -not $thaw.success) { throw "no successful THAW in the status: $($recent | ConvertTo-Json -Compress)" }
    if ($freeze.frozen -lt $MinFrozen) { throw "FREEZE froze $($freeze.frozen) filesystems, expected at least $MinFrozen" }
    "FREEZE $($freeze.duration_ms) ms, THAW $($thaw.duration_ms) ms, $($freeze.frozen) frozen, $($freeze.skipped) skipped"
}

# syslog since `begin $Tag` has a successful FREEZE line, then a successful
# THAW line, each with its duration.
# The daemon holds its log lines while frozen and writes them after the
# thaw, so give syslog a few seconds.
function Assert-FreezeThawLog([string] $Machine, [string] $Tag) {
    $deadline = (Get-Date).AddSeconds(15)
    while ($true) {
        $log = (Invoke-Guest -Machine $Machine -Command "log-since $Tag").Output
        $freeze = [regex]::Match($log, 'FREEZE msgid \d+: success in (\d+) ms')
        $thaw = [regex]::Match($log, 'THAW msgid \d+: success in (\d+) ms')
        if (($freeze.Success -and $thaw.Success) -or (Get-Date) -gt $deadline) { break }
        Start-Sleep -Seconds 1
    }
    if (-not $freeze.Success) { throw "syslog has no 'FREEZE msgid N: success in N ms' line since $Tag`n$log" }
    if (-not $thaw.Success) { throw "syslog has no 'THAW msgid N: success in N ms' line since $Tag`n$log" }
    if ($thaw.Index -lt $freeze.Index) { throw "syslog shows THAW before FREEZE`n$log" }
    "syslog: freeze $($freeze.Groups[1].Value) ms, thaw $($thaw.Groups[1].Value) ms"
}

# Checkpoint-VM with a time limit; throws what Hyper-V reported on failure.
function New-Checkpoint([string] $VMName, [string] $Name) {
    $job = Checkpoint-VM -Name $VMName -SnapshotName $Name -AsJob
    try {
        if (-not (Wait-Job -Job $job -Timeout $CheckpointTimeoutSec)) {
            Stop-Job -Job $job
            throw "Checkpoint-VM $Name did not finish within $CheckpointTimeoutSec s"
        }
        Receive-Job -Job $job -ErrorAction Stop | Out-Null
    }
    finally {
        Remove-Job -Job $job -Force
    }
    if ($null -eq (Get-VMSnapshot -VMName $VMName -Name $Name -ErrorAction SilentlyContinue)) {
        throw "Checkpoint-VM reported success but there is no checkpoint $Name"
    }
}

# The checkpoint must NOT be taken (ProductionOnly: the guest could not
# quiesce). Returns Hyper-V's error message.
function Assert-CheckpointFails([string] $VMName, [string] $Name) {
    $failure = $null
    try {
        New-Checkpoint -VMName $VMName -Name $Name
    }
    catch {
        $failure = $_.Exception.Message
    }
    if ($null -eq $failure) { throw "checkpoint $Name was taken although the guest could not quiesce" }
    if ($failure -like '*did not finish within*') { throw $failure }
    if ($null -ne (Get-VMSnapshot -VMName $VMName -Name $Name -ErrorAction SilentlyContinue)) {
        throw "Checkpoint-VM failed but left a checkpoint $Name (fallback to a standard checkpoint?)"
    }
    ($failure -split "`n")[0]
}

# Restores a checkpoint taken while the VM ran, boots it and checks that the
# marker written just before the checkpoint is there and the one written
# just after is not: the checkpoint holds what the guest wrote before the
# freeze (flushed by it: the markers are written without sync).
function Assert-MarkerInCheckpoint {
    param([string] $Machine, [string] $VMName, [string] $Checkpoint, [string] $Tag, [string] $Token, [string[]] $Dirs)
    $dirList = $Dirs -join ' '
    Invoke-Guest -Machine $Machine -Command "marker-write $Tag-after $dirList" | Out-Null
    # Power off hard: nothing the guest still holds in memory reaches disk.
    Stop-VM -Name $VMName -TurnOff -Force
    Restore-VMSnapshot -VMName $VMName -Name $Checkpoint -Confirm:$false
    if ((Get-VM -Name $VMName).State -ne 'Running') { Start-VM -Name $VMName }
    Wait-Guest -Machine $Machine
    Wait-VssIntegration -VMName $VMName
    Invoke-Guest -Machine $Machine -Command "marker-check $Tag $Token $dirList" | Out-Null
    Invoke-Guest -Machine $Machine -Command "marker-absent $Tag-after $dirList" | Out-Null
    Invoke-Guest -Machine $Machine -Command 'fs-health' | Out-Null
    "marker in checkpoint ($($Dirs.Count) dirs), filesystems healthy after restore"
}

# The control case of the marker check: the same kind of marker, left for
# as long as the checkpoint's window lasted but with no freeze, then the
# power cut. It must not be on disk after the boot; if it is, the
# filesystem wrote it by itself and the marker in the checkpoint proves
# nothing about the freeze.
function Assert-MarkerNeedsFreeze {
    param([string] $Machine, [string] $VMName, [string] $Tag, [string[]] $Dirs, [int] $Seconds)
    $dirList = $Dirs -join ' '
    Invoke-Guest -Machine $Machine -Command 'flush-delay-raise' | Out-Null
    Invoke-Guest -Machine $Machine -Command "marker-write $Tag $dirList" | Out-Null
    Start-Sleep -Seconds $Seconds
    Stop-VM -Name $VMName -TurnOff -Force
    Start-VM -Name $VMName
    Wait-Guest -Machine $Machine
    Wait-VssIntegration -VMName $VMName
    $absent = Invoke-Guest -Machine $Machine -Command "marker-absent $Tag $dirList" -AllowFailure
    if ($absent.ExitCode -ne 0) {
        throw "control: a marker left $Seconds s without a freeze reached the disk anyway, so the marker check proves nothing here: $($absent.Output)"
    }
    "control: without a freeze the marker is not on disk after $Seconds s"
}

# The Hyper-V checkpoint cycle every filesystem scenario shares: mark the
# log, hold off the filesystems' own flushing, write markers, checkpoint,
# check the daemon's status and syslog, restore the checkpoint and look for
# the marker; -WithControl then shows that without the freeze the marker
# would not have been there (Assert-MarkerNeedsFreeze).
function Test-CheckpointCycle {
    param([string] $Machine, [string] $VMName, [string] $Tag, [string[]] $Dirs, [int] $MinFrozen, [switch] $WithControl)
    $before = Get-DaemonReport $Machine
    Invoke-Guest -Machine $Machine -Command "begin $Tag" | Out-Null
    Invoke-Guest -Machine $Machine -Command 'flush-delay-raise' | Out-Null
    # From the marker's write to the end of the checkpoint: the window in
    # which only the freeze may put the marker on disk.
    $window = [System.Diagnostics.Stopwatch]::StartNew()
    $written = (Invoke-Guest -Machine $Machine -Command "marker-write $Tag $($Dirs -join ' ')").Output
    $token = [regex]::Match($written, "$Tag\.\d+\.\d+").Value
    if (-not $token) { throw "marker-write printed no token: $written" }
    $checkpoint = "hvvss-$Tag"
    New-Checkpoint -VMName $VMName -Name $checkpoint
    $windowSeconds = [int][math]::Ceiling($window.Elapsed.TotalSeconds)
    $after = Get-SettledReport $Machine $before
    $status = Assert-FreezeThaw -Before $before -After $after -MinFrozen $MinFrozen
    $log = Assert-FreezeThawLog -Machine $Machine -Tag $Tag
    Invoke-Guest -Machine $Machine -Command "writable $($Dirs -join ' ')" | Out-Null
    $marker = Assert-MarkerInCheckpoint -Machine $Machine -VMName $VMName -Checkpoint $checkpoint `
        -Tag $Tag -Token $token -Dirs $Dirs
    $result = "$status; $log; $marker (window $windowSeconds s)"
    if ($WithControl) {
        $result += '; ' + (Assert-MarkerNeedsFreeze -Machine $Machine -VMName $VMName -Tag "$Tag-control" `
                -Dirs $Dirs -Seconds $windowSeconds)
    }
    $result
}

# --- WMI: a backup-style (recovery) snapshot, as backup products take it ----

# A CIM instance as the embedded-instance string WMI methods take.
function ConvertTo-EmbeddedInstance([Microsoft.Management.Infrastructure.CimInstance] $Instance) {
    $serializer = [Microsoft.Management.Infrastructure.Serialization.CimSerializer]::Create()
    $options = [Microsoft.Management.Infrastructure.Serialization.InstanceSerializationOptions]::None
    [System.Text.Encoding]::Unicode.GetString($serializer.Serialize($Instance, $options))
}

# Waits for the job a Hyper-V WMI method started (ReturnValue 4096), with a
# time limit; returns the finished Msvm_ConcreteJob, or $null when the method
# completed at once (ReturnValue 0).
function Wait-CimJob($Result, [string] $What) {
    if ($Result.ReturnValue -eq 0) { return $null }
    if ($Result.ReturnValue -ne 4096) { throw "$What failed at once: return value $($Result.ReturnValue)" }
    $job = $Result.Job | Get-CimInstance
    $deadline = (Get-Date).AddSeconds($CheckpointTimeoutSec)
    # JobState 2 New, 3 Starting, 4 Running, 7 Completed; anything else
    # (suspended, terminated, killed, exception) is a failure.
    while ($job.JobState -ge 2 -and $job.JobState -le 4) {
        if ((Get-Date) -gt $deadline) { throw "$What did not finish within $CheckpointTimeoutSec s" }
        Start-Sleep -Seconds 1
        $job = $job | Get-CimInstance
    }
    if ($job.JobState -ne 7) {
        throw "$What failed: job state $($job.JobState), error $($job.ErrorCode): $($job.ErrorDescription)"
    }
    $job
}

# A backup application's snapshot: Msvm_VirtualSystemSnapshotService.
# CreateSnapshot with SnapshotType 32768 and an
# Msvm_VirtualSystemSnapshotSettingData of ConsistencyLevel 1 (application
# consistent) and IgnoreNonSnapshottableDisks, exactly as New-VmBackupCheckpoint
# in Microsoft's xHyper-VBackup sample does (MicrosoftDocs/Virtualization-
# Documentation, hyperv-samples/taylorb-wmi/xhypervbackup/
# xHyper-VBackup.cmdlets.psm1; its Get-VmBackupCheckpoints finds the result
# by VirtualSystemType 'Microsoft:Hyper-V:Snapshot:Recovery'). Microsoft's
# reference for CreateSnapshot lists 32768..65535 only as "Vendor Specific";
# no reference page names 32768 a recovery snapshot, so the type of the
# result is checked below rather than assumed.
function New-BackupSnapshot([string] $VMName) {
    $service = Get-CimInstance -Namespace $VirtNamespace -ClassName Msvm_VirtualSystemSnapshotService
    $system = Get-CimInstance -Namespace $VirtNamespace -ClassName Msvm_ComputerSystem -Filter "ElementName='$VMName'"
    if ($null -eq $system) { throw "no Msvm_ComputerSystem named $VMName" }
    $settings = Get-CimClass -Namespace $VirtNamespace -ClassName Msvm_VirtualSystemSnapshotSettingData |
        New-CimInstance -ClientOnly -Property @{ ConsistencyLevel = [byte]1; IgnoreNonSnapshottableDisks = $true }
    $result = $service | Invoke-CimMethod -MethodName CreateSnapshot -Arguments @{
        AffectedSystem   = $system
        SnapshotSettings = (ConvertTo-EmbeddedInstance $settings)
        SnapshotType     = [uint16]32768
    }
    $job = Wait-CimJob -Result $result -What 'CreateSnapshot (type 32768)'
    $snapshot = $null
    if ($null -ne $job) {
        $snapshot = $job | Get-CimAssociatedInstance -ResultClassName Msvm_VirtualSystemSettingData | Select-Object -First 1
    }
    elseif ($result.PSObject.Properties['ResultingSnapshot'] -and $null -ne $result.ResultingSnapshot) {
        $snapshot = $result.ResultingSnapshot | Get-CimInstance
    }
    if ($null -eq $snapshot) { throw 'CreateSnapshot succeeded but returned no snapshot' }
    $snapshot
}

function Remove-BackupSnapshot([Microsoft.Management.Infrastructure.CimInstance] $Snapshot) {
    $service = Get-CimInstance -Namespace $VirtNamespace -ClassName Msvm_VirtualSystemSnapshotService
    $result = $service | Invoke-CimMethod -MethodName DestroySnapshot -Arguments @{ AffectedSnapshot = $Snapshot }
    Wait-CimJob -Result $result -What 'DestroySnapshot' | Out-Null
}

function Test-BackupSnapshot([string] $Machine, [string] $VMName, [string] $Tag) {
    $before = Get-DaemonReport $Machine
    Invoke-Guest -Machine $Machine -Command "begin $Tag" | Out-Null
    $snapshot = New-BackupSnapshot -VMName $VMName
    try {
        if ($snapshot.VirtualSystemType -ne 'Microsoft:Hyper-V:Snapshot:Recovery') {
            throw "the snapshot is of type '$($snapshot.VirtualSystemType)', expected Microsoft:Hyper-V:Snapshot:Recovery"
        }
        $after = Get-SettledReport $Machine $before
        $status = Assert-FreezeThaw -Before $before -After $after
        $log = Assert-FreezeThawLog -Machine $Machine -Tag $Tag
        "recovery snapshot; $status; $log"
    }
    finally {
        Remove-BackupSnapshot -Snapshot $snapshot
    }
}

# --- scenarios ---------------------------------------------------------------

# Runs one scenario, records PASS or FAIL with its detail and duration; a
# failing scenario does not stop the others.
function Invoke-Scenario([string] $Name, [scriptblock] $Body) {
    Write-Step "scenario $Name"
    $clock = [System.Diagnostics.Stopwatch]::StartNew()
    try {
        $detail = & $Body
        Add-Result -Phase scenario -Name $Name -Result PASS -Seconds ([int]$clock.Elapsed.TotalSeconds) -Detail "$detail"
        Write-Host "    PASS: $detail" -ForegroundColor Green
    }
    catch {
        $message = $_.Exception.Message
        Add-Result -Phase scenario -Name $Name -Result FAIL -Seconds ([int]$clock.Elapsed.TotalSeconds) -Detail $message
        Write-Host "    FAIL: $message" -ForegroundColor Red
    }
}

function Invoke-UfsScenarios([string] $VMName) {
    Invoke-Scenario 'ufs-root' {
        Test-CheckpointCycle -Machine 'ufs' -VMName $VMName -Tag "ufsroot$RunId" -Dirs @('/root', '/var/tmp') -MinFrozen 1 -WithControl
    }
    Invoke-Scenario 'ufs-wmi-backup' {
        Test-BackupSnapshot -Machine 'ufs' -VMName $VMName -Tag "ufswmi$RunId"
    }
    Invoke-Scenario 'ufs-second-disk' {
        $vhd = Join-Path $Out "$VMName-data2.vhdx"
        New-VHD -Path $vhd -SizeBytes 1GB -Dynamic | Out-Null
        # Hot-add to the running VM's SCSI controller, as an admin would.
        Add-VMHardDiskDrive -VMName $VMName -ControllerType SCSI -Path $vhd
        Invoke-Guest -Machine 'ufs' -Command 'disk2-setup /data2' | Out-Null
        Test-CheckpointCycle -Machine 'ufs' -VMName $VMName -Tag "ufsdisk2$RunId" -Dirs @('/root', '/var/tmp', '/data2') -MinFrozen 2
    }
    Invoke-Scenario 'app' {
        Invoke-Guest -Machine 'ufs' -Command 'app-start ok' | Out-Null
        try {
            $tag = "app$RunId"
            $before = Get-DaemonReport 'ufs'
            Invoke-Guest -Machine 'ufs' -Command "begin $tag" | Out-Null
            New-Checkpoint -VMName $VMName -Name "hvvss-$tag"
            $status = Assert-FreezeThaw -Before $before -After (Get-SettledReport 'ufs' $before)
            $journal = @((Invoke-Guest -Machine 'ufs' -Command 'app-journal').Output -split "`n" |
                    ForEach-Object { $_.Trim() } | Where-Object { $_ -in 'freeze', 'thaw' })
            if (($journal -join ',') -ne 'freeze,thaw') {
                throw "the app's journal is '$($journal -join ',')', expected 'freeze,thaw'"
            }
            "app ran freeze then thaw; $status"
        }
        finally {
            Invoke-Guest -Machine 'ufs' -Command 'app-stop' -AllowFailure | Out-Null
        }
    }
    Invoke-Scenario 'app-veto' {
        Invoke-Guest -Machine 'ufs' -Command 'app-start veto' | Out-Null
        try {
            $before = Get-DaemonReport 'ufs'
            $failure = Assert-CheckpointFails -VMName $VMName -Name "hvvss-appveto$RunId"
            $after = Get-DaemonReport 'ufs'
            # Applications are asked first: the filesystems were never frozen.
            if ($after.status.counters.freeze_ok -ne $before.status.counters.freeze_ok) {
                throw 'the daemon froze the filesystems although the app vetoed'
            }
            if ($after.status.state -ne 'idle') { throw "the daemon reports state $($after.status.state)" }
            Invoke-Guest -Machine 'ufs' -Command 'writable /root /var/tmp' | Out-Null
        }
        finally {
            Invoke-Guest -Machine 'ufs' -Command 'app-stop' -AllowFailure | Out-Null
        }
        # Without the vetoing app the next checkpoint works.
        New-Checkpoint -VMName $VMName -Name "hvvss-appveto-after$RunId"
        "checkpoint refused: $failure; guest writable; next checkpoint ok"
    }
    Invoke-Scenario 'daemon-stopped' {
        Invoke-Guest -Machine 'ufs' -Command 'daemon-stop' | Out-Null
        try {
            $refusal = [System.Diagnostics.Stopwatch]::StartNew()
            $failure = Assert-CheckpointFails -VMName $VMName -Name "hvvss-nodaemon$RunId"
            $failedAfter = [int]$refusal.Elapsed.TotalSeconds
            Invoke-Guest -Machine 'ufs' -Command 'writable /root /var/tmp' | Out-Null
        }
        finally {
            Invoke-Guest -Machine 'ufs' -Command 'daemon-start' -AllowFailure | Out-Null
        }
        $before = Get-DaemonReport 'ufs'
        New-Checkpoint -VMName $VMName -Name "hvvss-daemonback$RunId"
        $status = Assert-FreezeThaw -Before $before -After (Get-SettledReport 'ufs' $before)
        "refused after $failedAfter s: $failure; after restart: $status"
    }
}

function Invoke-ZfsScenarios([string] $VMName) {
    Invoke-Scenario 'zfs-root' {
        Test-CheckpointCycle -Machine 'zfs' -VMName $VMName -Tag "zfsroot$RunId" -Dirs @('/root', '/var/tmp') -MinFrozen 0 -WithControl
    }
    Invoke-Scenario 'zfs-wmi-backup' {
        Test-BackupSnapshot -Machine 'zfs' -VMName $VMName -Tag "zfswmi$RunId"
    }
}

# Deletes the VM with its checkpoints, whatever state the scenarios left.
# Deleting the VM drops its checkpoints' configurations at once; removing
# the checkpoints first (Remove-VMSnapshot) would merge every differencing
# disk into its parent, minutes of disk I/O for disks deleted right after.
function Remove-TestVM([string] $Machine, [string] $VMName) {
    Write-Step "removing $VMName"
    $vm = Get-VM -Name $VMName -ErrorAction SilentlyContinue
    if ($null -ne $vm) {
        if ($vm.State -ne 'Off') { Stop-VM -VM $vm -TurnOff -Force }
        # A recovery snapshot is left only by a failed *-wmi-backup scenario;
        # it is destroyed the way it was made (WMI), as Microsoft documents
        # no behaviour of Remove-VM for one.
        $system = Get-CimInstance -Namespace $VirtNamespace -ClassName Msvm_ComputerSystem -Filter "ElementName='$VMName'"
        if ($null -ne $system) {
            $system | Get-CimAssociatedInstance -ResultClassName CIM_VirtualSystemSettingData -Association Msvm_SnapshotOfVirtualSystem |
                Where-Object { $_.VirtualSystemType -eq 'Microsoft:Hyper-V:Snapshot:Recovery' } |
                ForEach-Object {
                    try { Remove-BackupSnapshot -Snapshot $_ } catch { Write-Warning "recovery snapshot: $($_.Exception.Message)" }
                }
        }
    }
    # Vagrant deletes the VM and its folder: the copy of the box's disk and
    # the checkpoints' differencing disks beside it.
    Invoke-Native -FilePath 'vagrant' -ArgumentList @('destroy', '-f', $Machine) -AllowFailure | Out-Null
    $vm = Get-VM -Name $VMName -ErrorAction SilentlyContinue
    if ($null -ne $vm) { Remove-VM -VM $vm -Force }
    # The hot-added disk of ufs-second-disk and the differencing disks
    # (.avhdx) its checkpoints created beside it.
    Get-ChildItem -Path $Out -Filter "$VMName-*vhdx" -ErrorAction SilentlyContinue | Remove-Item -Force
}

# --- main ----------------------------------------------------------------------

function Test-Preflight {
    foreach ($command in 'Checkpoint-VM', 'Get-VMIntegrationService', 'New-VHD', 'Get-CimInstance') {
        if ($null -eq (Get-Command $command -ErrorAction SilentlyContinue)) {
            throw "$command is missing: enable Hyper-V and its PowerShell module (tests\hyperv\README.md, prerequisites)"
        }
    }
    foreach ($tool in 'vagrant', 'git') {
        if ($null -eq (Get-Command $tool -ErrorAction SilentlyContinue)) { throw "$tool is not on PATH (see tests\hyperv\README.md, prerequisites)" }
    }
    if (-not $SkipBuild -and $null -eq (Get-Command 'packer' -ErrorAction SilentlyContinue)) {
        throw 'packer is not on PATH (see tests\hyperv\README.md, prerequisites)'
    }
    if ($null -eq (Get-VMSwitch -Name $SwitchName -ErrorAction SilentlyContinue)) {
        throw "no Hyper-V switch named '$SwitchName' (-SwitchName; it needs DHCP and Internet access; Windows Server has no 'Default Switch': tests\hyperv\README.md)"
    }
    # A checkout made before .gitattributes existed keeps its CRLF files.
    $crlf = @($GuestReadFiles | ForEach-Object { Get-ChildItem -Path (Join-Path $Here $_) } |
            Where-Object { [System.IO.File]::ReadAllText($_.FullName).Contains("`r") } |
            ForEach-Object { $_.FullName })
    if ($crlf.Count -gt 0) {
        throw "CR line endings in files the FreeBSD guest reads: $($crlf -join ', '). Rewrite the checkout with LF: git -C $Repo checkout-index --force --all"
    }
}

function Resolve-Package {
    if ($Package) { return (Resolve-Path $Package).Path }
    $found = Get-ChildItem -Path (Join-Path $Repo 'dist') -Filter 'hyperv-vss-*.pkg' -ErrorAction SilentlyContinue |
        Where-Object { $_.Name -notlike 'hyperv-vss-kmod-*' } |
        Sort-Object LastWriteTime -Descending | Select-Object -First 1
    if ($null -eq $found) {
        throw "no dist\hyperv-vss-*.pkg: build it with 'bash scripts/build-pkg' (Linux or WSL) or pass -Package"
    }
    $found.FullName
}

function Build-Boxes {
    $pkg = Resolve-Package
    Write-Step "package: $pkg"
    $status = Invoke-Native -FilePath 'git' -ArgumentList @('-C', $Repo, 'status', '--porcelain')
    if ($status.Output) { Write-Warning 'the checkout has uncommitted changes; the kmod port builds the committed tree (git archive HEAD)' }
    $src = Join-Path $Out 'hyperv-vss-src.tar'
    Invoke-Native -FilePath 'git' -ArgumentList ($GitArchiveOptions + @('-C', $Repo, 'archive', '--format=tar', "--output=$src", 'HEAD')) | Out-Null

    $packerDir = Join-Path $Here 'packer'
    Invoke-Streaming 'packer' @('init', (Join-Path $packerDir 'plugins\plugins.pkr.hcl'))
    # The guest fetches the installer script from Packer's HTTP server on
    # this host (served by the builder plugin's process, so open the port,
    # not a program). Removed in the final cleanup.
    New-NetFirewallRule -DisplayName $FirewallRule -Direction Inbound -Action Allow -Protocol TCP `
        -LocalPort $HttpPort | Out-Null
    $vars = @('-var', "pkg_file=$pkg", '-var', "src_file=$src", '-var', "switch_name=$SwitchName",
        '-var', "output_dir=$Out", '-var', "http_port=$HttpPort")
    if ($IsoUrl) { $vars += @('-var', "iso_url=$IsoUrl") }
    if ($IsoChecksum) { $vars += @('-var', "iso_checksum=$IsoChecksum") }
    if ($DistSite) { $vars += @('-var', "freebsd_dist_site=$DistSite") }
    if ($PortsBranch) { $vars += @('-var', "ports_branch=$PortsBranch") }
    foreach ($fs in $RootFs) {
        Write-Step "packer build ($fs)"
        Invoke-Streaming 'packer' (@('build', '-force', "-only=hyperv-iso.$fs") + $vars + @($packerDir))
    }
}

# Everything before the scenarios of one machine; a failure here is a setup
# failure (exit status 2), not a failed scenario.
function Start-TestVM([string] $Machine, [string] $VMName) {
    Write-Step "vagrant up $Machine ($VMName)"
    Invoke-Streaming 'vagrant' @('up', $Machine, '--provider', 'hyperv')
    # A failed quiesce must fail the checkpoint, not fall back to a
    # standard (saved-state) checkpoint.
    Set-VM -Name $VMName -CheckpointType ProductionOnly
    Wait-VssIntegration -VMName $VMName
    Write-Host ((Invoke-Guest -Machine $Machine -Command 'info').Output)
}

$clock = [System.Diagnostics.Stopwatch]::StartNew()
$env:VAGRANT_CWD = $Here
$env:HVVSS_RUN_ID = $RunId
$env:HVVSS_SWITCH = $SwitchName
$env:HVVSS_MEMORY = "$MemoryMB"
$env:HVVSS_CPUS = "$Cpus"
$addedBoxes = @()
try {
    Test-Preflight
    New-Item -ItemType Directory -Force -Path $Out | Out-Null
    if (-not $SkipBuild) { Build-Boxes }
    foreach ($fs in $RootFs) {
        $box = Join-Path $Out "hyperv-vss-freebsd-$fs.box"
        if (-not (Test-Path $box)) { throw "no box $box (run without -SkipBuild)" }
        Invoke-Native -FilePath 'vagrant' -ArgumentList @('box', 'add', '--force', '--name', "hyperv-vss/freebsd-$fs", $box) | Out-Null
        $addedBoxes += "hyperv-vss/freebsd-$fs"
    }

    foreach ($fs in $RootFs) {
        $vmName = "hyperv-vss-$fs-$RunId"
        try {
            $ready = $false
            try {
                Start-TestVM -Machine $fs -VMName $vmName
                $ready = $true
            }
            catch {
                Add-Result -Phase setup -Name "$fs-setup" -Result FAIL -Detail $_.Exception.Message
                Write-Host "    FAIL ($fs setup): $($_.Exception.Message)" -ForegroundColor Red
            }
            if ($ready) {
                if ($fs -eq 'ufs') { Invoke-UfsScenarios -VMName $vmName } else { Invoke-ZfsScenarios -VMName $vmName }
            }
        }
        finally {
            try {
                Remove-TestVM -Machine $fs -VMName $vmName
            }
            catch {
                Add-Result -Phase cleanup -Name "$fs-cleanup" -Result FAIL -Detail "remove $vmName by hand: $($_.Exception.Message)"
            }
        }
    }
}
catch {
    Add-Result -Phase setup -Name 'setup' -Result FAIL -Detail $_.Exception.Message
    Write-Host "setup failed: $($_.Exception.Message)" -ForegroundColor Red
}
finally {
    Get-NetFirewallRule -DisplayName $FirewallRule -ErrorAction SilentlyContinue | Remove-NetFirewallRule
    if (-not $KeepBoxes) {
        foreach ($box in $addedBoxes) {
            Invoke-Native -FilePath 'vagrant' -ArgumentList @('box', 'remove', '--force', $box) -AllowFailure | Out-Null
        }
    }
}

Write-Host ''
Write-Host "hyperv-vss Hyper-V pipeline, run $RunId, $([int]$clock.Elapsed.TotalMinutes) min"
$Results | Format-Table -AutoSize -Wrap -Property @('Scenario', 'Result', 'Seconds', 'Detail') | Out-String -Width 200 | Write-Host
$failed = @($Results | Where-Object { $_.Result -ne 'PASS' }).Count
$passed = @($Results | Where-Object { $_.Result -eq 'PASS' }).Count
Write-Host "$passed passed, $failed failed"
exit (Get-ExitStatus)
