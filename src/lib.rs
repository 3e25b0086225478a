//! gatewatch: orchestration and policy on top of the `probes` primitives.
//!
//! The binary (`src/main.rs`) parses the command line ([`cli`]) and hands
//! each subcommand to its module's `execute`.

pub mod analysis;
pub mod analyze;
pub mod categories;
pub mod cli;
pub mod collector;
pub mod compare;
pub mod control;
pub mod geo;
pub mod history;
pub mod http_server;
pub mod inputcheck;
pub mod lists;
pub mod model;
pub mod ooni;
pub mod report;
pub mod results;
pub mod run;
pub mod runs;
pub mod schedule;
pub mod testlist;
pub mod trace;
pub mod upload;
pub mod usage;
pub mod web;
