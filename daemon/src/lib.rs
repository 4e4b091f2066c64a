//! hv_vssd: freezes and thaws filesystems when the Hyper-V host takes a
//! VSS backup, and never leaves one frozen.
//!
//! The data path, one module per step: [`device`] (requests from
//! `/dev/hv_fsvss_dev`) → [`service`] (the single-threaded poll loop) →
//! [`engine`] (CHECK/FREEZE/THAW, watchdog, rollback) → [`policy`] (which
//! mounts, from [`mounts`] and [`config`]) → [`hooks`] and [`freezer`].
//! [`log`] holds log lines while anything is frozen; [`status`] and
//! [`statefile`] are what the daemon leaves on disk, written through
//! [`safefile`]. [`hardening`] and [`preflight`] run at start and for `-t`.

pub mod busy;
pub mod child;
pub mod cli;
pub mod config;
pub mod device;
pub mod engine;
pub mod exit_watch;
pub mod freezer;
pub mod hardening;
pub mod hooks;
pub mod log;
pub mod mounts;
pub mod pidfile;
pub mod policy;
pub mod preflight;
pub mod safefile;
pub mod service;
pub mod statefile;
pub mod status;
#[cfg(test)]
mod testing;
pub mod watchdog;
