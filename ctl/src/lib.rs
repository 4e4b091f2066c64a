//! hv_vssctl: the administrator's command for hv_vssd(8): `status` (the
//! daemon's published state), `check` (the configuration and what a backup
//! would do on this machine) and `test` (a real freeze and thaw through the
//! daemon's own engine). The binary is `src/main.rs`; each command has its
//! module.

pub mod check;
pub mod cli;
pub mod driver;
pub mod test_freeze;
