//! `hv_vssctl check`: the configuration, and what a backup would do on this
//! machine: each mount frozen or skipped and why, each hook accepted or
//! refused and why, which driver serves the VSS channel, whether the daemon
//! runs. Reads only; freezes and writes nothing.

use std::fmt::Write as _;
use std::path::Path;

use hv_vssd::config::Config;
use hv_vssd::hooks;
use hv_vssd::log::Escaped;
use hv_vssd::mounts;
use hv_vssd::pidfile;
use hv_vssd::policy::{self, FreezePlan};
use serde::Serialize;

use crate::driver::{self, Channel};

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub config_path: String,
    pub settings: Settings,
    pub mounts: Vec<MountDecision>,
    pub zfs_pools: Vec<String>,
    /// Set when `strict` would refuse every backup: why.
    pub veto: Option<String>,
    pub hooks_dir: String,
    pub hooks: Vec<HookDecision>,
    pub channel: Channel,
    pub daemon_pid: Option<u32>,
    /// What would make a backup fail or not run at all.
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub request_budget_secs: u64,
    pub freeze_limit_secs: u64,
    pub hook_timeout_secs: u64,
}

#[derive(Debug, Serialize)]
pub struct MountDecision {
    pub path: String,
    pub fs_type: String,
    pub source: String,
    pub freeze: bool,
    /// Why it is skipped.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct HookDecision {
    pub name: String,
    pub accepted: bool,
    pub reason: Option<String>,
}

/// Everything but the configuration itself, which the caller loaded.
pub fn check(config: &Config, config_path: &Path, device_dir: &Path) -> CheckReport {
    let mut problems = Vec::new();
    let (plan, listed) = match mounts::discover() {
        Ok(listed) => (policy::plan(&listed, config), listed),
        Err(e) => {
            problems.push(e.to_string());
            (FreezePlan::default(), Vec::new())
        }
    };
    let mut decisions: Vec<MountDecision> = listed
        .iter()
        .map(|mount| {
            let skipped = plan.skipped.iter().find(|s| &s.mount == mount);
            MountDecision {
                path: Escaped(mount.path.as_os_str()).to_string(),
                fs_type: mount.fs_type.clone(),
                source: Escaped(mount.source.as_ref()).to_string(),
                freeze: skipped.is_none(),
                reason: skipped.map(|s| s.reason.to_string()),
            }
        })
        .collect();
    // Identical duplicate entries: only the last one counts as frozen.
    dedupe_frozen(&mut decisions, plan.freeze.len());
    let set = hooks::scan(&config.hooks_dir, 0, &config.file);
    let mut hook_list: Vec<HookDecision> = set
        .hooks
        .iter()
        .map(|hook| HookDecision {
            name: hook.name(),
            accepted: true,
            reason: None,
        })
        .chain(set.refused.iter().map(|refused| HookDecision {
            name: file_name(&refused.path),
            accepted: false,
            reason: Some(refused.reason.clone()),
        }))
        .collect();
    hook_list.sort_by(|a, b| a.name.cmp(&b.name));
    let channel = driver::channel(device_dir);
    let daemon_pid = pidfile::running(&config.pid_file);
    if let Some(veto) = &plan.veto {
        problems.push(format!("every backup would be refused: {veto}"));
    }
    if channel.driver.is_none() && !channel.device_present {
        problems.push(format!(
            "no VSS device: {} (backups of this machine are crash-consistent only)",
            channel.description
        ));
    } else if daemon_pid.is_none() {
        problems.push(
            "hv_vssd is not running: devd starts it when the device appears; \
             start it now with `service hv_vssd onestart`"
                .to_owned(),
        );
    }
    CheckReport {
        config_path: Escaped(config_path.as_os_str()).to_string(),
        settings: Settings {
            request_budget_secs: config.request_budget.as_secs(),
            freeze_limit_secs: config.freeze_limit.as_secs(),
            hook_timeout_secs: config.hook_timeout.as_secs(),
        },
        mounts: decisions,
        zfs_pools: plan.zfs_pools,
        veto: plan.veto,
        hooks_dir: Escaped(config.hooks_dir.as_os_str()).to_string(),
        hooks: hook_list,
        channel,
        daemon_pid,
        problems,
    }
}

fn dedupe_frozen(decisions: &mut [MountDecision], frozen: usize) {
    let mut seen = 0;
    for decision in decisions.iter_mut().rev() {
        if decision.freeze {
            seen += 1;
            if seen > frozen {
                decision.freeze = false;
                decision.reason = Some("listed twice".to_owned());
            }
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| Escaped(n).to_string())
}

impl CheckReport {
    /// Renders for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "Configuration {}: OK (request_budget {} s, freeze_limit {} s, hook_timeout {} s)",
            self.config_path, s.request_budget_secs, s.freeze_limit_secs, s.hook_timeout_secs
        );
        let _ = writeln!(
            out,
            "VSS channel: {}; device {}",
            self.channel.description,
            if self.channel.device_present {
                "present"
            } else {
                "absent"
            }
        );
        match self.daemon_pid {
            Some(pid) => {
                let _ = writeln!(out, "Daemon: hv_vssd is running as pid {pid}");
            }
            None => out.push_str("Daemon: hv_vssd is not running\n"),
        }
        let frozen = self.mounts.iter().filter(|m| m.freeze).count();
        let _ = writeln!(
            out,
            "Mounts: {frozen} to freeze, {} skipped",
            self.mounts.len() - frozen
        );
        for m in &self.mounts {
            let action = if m.freeze { "freeze" } else { "skip  " };
            let _ = write!(out, "  {action}  {} ({}, {})", m.path, m.fs_type, m.source);
            if let Some(reason) = &m.reason {
                let _ = write!(out, ": {reason}");
            }
            out.push('\n');
        }
        if !self.zfs_pools.is_empty() {
            let _ = writeln!(
                out,
                "ZFS pools flushed with zpool sync: {}",
                self.zfs_pools.join(", ")
            );
        }
        let accepted = self.hooks.iter().filter(|h| h.accepted).count();
        let _ = writeln!(
            out,
            "Hooks in {}: {accepted} accepted, {} refused",
            self.hooks_dir,
            self.hooks.len() - accepted
        );
        for h in &self.hooks {
            match &h.reason {
                None => {
                    let _ = writeln!(out, "  accept  {}", h.name);
                }
                Some(reason) => {
                    let _ = writeln!(out, "  refuse  {}: {reason}", h.name);
                }
            }
        }
        if self.problems.is_empty() {
            out.push_str("No problems found.\n");
        } else {
            for problem in &self.problems {
                let _ = writeln!(out, "Problem: {problem}");
            }
        }
        out
    }
}
