//! The one integration-test binary. Each module starts real servers
//! (in-process on 127.0.0.1, or in network namespaces the lab creates) and
//! asserts exact outcomes.

mod cli;
mod collector_store;
mod compare_report;
mod control;
mod fakes;
mod honest;
mod lab;
mod netwide;
mod one_flow;
mod ooni_data;
mod probes_dns;
mod probes_http;
mod probes_quic;
mod probes_tcp;
mod probes_tls;
mod quic_fake;
mod report_plain;
mod run;
mod server_limits;
mod trace;
mod unattended;
mod verdicts;
mod web;
mod web_dns_window;
mod web_quic;
