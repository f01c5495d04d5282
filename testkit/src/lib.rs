//! What the end-to-end tests of `dataplane` (fwd_e2e, fwd_nat_e2e, fwd_ftp_e2e) and `mgmt`
//! (e2e_fwd, ha_e2e) share: [`netns`], the namespaces and veths the real `fwd` runs
//! between, and [`fwd`], finding, starting and stopping the real `fwd` and one request on
//! its control socket. A dev-dependency only (`publish = false`); nothing here is part of
//! the appliance.

pub mod fwd;
pub mod netns;
