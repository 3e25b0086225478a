//! Run-wide clustering of probe-side pages: the same page (same body hash,
//! or near-identical text) served for two or more **unrelated** sites —
//! sites whose control pages differ — is a blockpage, even one nobody has
//! fingerprinted (the way ICLab and Censored Planet find new blockpages).
//!
//! # How it works with results written per URL
//! A run holds one [`Registry`] (shared through
//! [`super::AnalysisContext::clusters`]). The analysis adds a page to it only
//! when the page reached the "differs in text from the control's, not the
//! site's own refusal or challenge" step of the verdict, over cleartext or a
//! refused certificate. The URL that brings a page's second unrelated site,
//! and every later one, is marked at once (`x_verdict.cluster`: the page's
//! hash and how many sites share it so far) and judged a blockpage. The
//! **first** URL of a cluster is already written when the second arrives,
//! so its own line keeps its verdict (usually `inconclusive`); the run
//! summary lists every cluster with all its sites, and `compare`/`report`
//! recompute the clusters from the result files across vantage points
//! ([`page_key_of`] gives the same keys from a stored measurement).
//!
//! Two URLs of one host, or two hosts whose control pages are the same
//! page (mirrors, parked domains of one provider), count as one site.
//! Memory is bounded: at most [`MAX_PAGES`] pages and [`MAX_MEMBERS`] sites
//! per page are kept.

use std::collections::BTreeSet;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::model::{Measurement, PageCluster, VerdictStatus};

use super::pagetext::{self, SAME_BLOCKPAGE, SAME_TEXT};

/// Distinct probe-side pages kept.
pub const MAX_PAGES: usize = 10_000;
/// Sites kept per page.
pub const MAX_MEMBERS: usize = 1_000;

/// A page's identity: its body hash and text sketch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PageKey {
    /// SHA-256 of the body, hex (empty when unknown).
    pub sha256: String,
    /// Its text sketch ([`pagetext::TextPrint::sketch`]).
    pub sketch: Vec<u32>,
}

impl PageKey {
    /// The key of a body.
    pub fn of_body(body: &[u8]) -> PageKey {
        PageKey {
            sha256: hex::encode(Sha256::digest(body)),
            sketch: pagetext::fingerprint(&String::from_utf8_lossy(body)).sketch,
        }
    }

    /// Same page: equal hashes, or text similarity ≥ `threshold`.
    fn same(&self, o: &PageKey, threshold: f64) -> bool {
        (!self.sha256.is_empty() && self.sha256.eq_ignore_ascii_case(&o.sha256))
            || pagetext::similarity(&self.sketch, &o.sketch).is_some_and(|s| s >= threshold)
    }
}

#[derive(Debug)]
struct Member {
    host: String,
    control: PageKey,
}

#[derive(Debug)]
struct Page {
    key: PageKey,
    /// One per unrelated site.
    sites: Vec<Member>,
    vantages: BTreeSet<String>,
}

/// A cluster as listed by the run summary, `compare` and `report`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClusterInfo {
    /// SHA-256 of the page that started it.
    pub page_sha256: String,
    /// Unrelated sites that got it.
    pub sites: u32,
    /// Their hosts (at most 20).
    pub hosts: Vec<String>,
    /// Vantage points that saw it (labels; empty within one run).
    pub vantages: Vec<String>,
}

/// The run-wide set of probe-side pages that differ from their control.
#[derive(Debug, Default)]
pub struct Registry {
    pages: Mutex<Vec<Page>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds `page`, served to the probe for `host` whose control page is
    /// `control`, seen from `vantage`. Returns the cluster once the page
    /// has two or more unrelated sites.
    pub fn add(
        &self,
        page: &PageKey,
        host: &str,
        control: &PageKey,
        vantage: &str,
    ) -> Option<PageCluster> {
        let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        let i = match pages.iter().position(|p| p.key.same(page, SAME_BLOCKPAGE)) {
            Some(i) => i,
            None if pages.len() >= MAX_PAGES => return None,
            None => {
                pages.push(Page {
                    key: page.clone(),
                    sites: Vec::new(),
                    vantages: BTreeSet::new(),
                });
                pages.len() - 1
            }
        };
        let p = &mut pages[i];
        if !vantage.is_empty() && p.vantages.len() < 64 {
            p.vantages.insert(vantage.to_string());
        }
        let related = p
            .sites
            .iter()
            .any(|m| m.host == host || m.control.same(control, SAME_TEXT));
        if !related && p.sites.len() < MAX_MEMBERS {
            p.sites.push(Member {
                host: host.to_string(),
                control: control.clone(),
            });
        }
        (p.sites.len() >= 2).then(|| PageCluster {
            page_sha256: p.key.sha256.clone(),
            sites: u32::try_from(p.sites.len()).unwrap_or(u32::MAX),
        })
    }

    /// Every page shared by two or more unrelated sites, most sites first.
    pub fn clusters(&self) -> Vec<ClusterInfo> {
        let pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<ClusterInfo> = pages
            .iter()
            .filter(|p| p.sites.len() >= 2)
            .map(|p| ClusterInfo {
                page_sha256: p.key.sha256.clone(),
                sites: u32::try_from(p.sites.len()).unwrap_or(u32::MAX),
                hosts: p.sites.iter().take(20).map(|m| m.host.clone()).collect(),
                vantages: p.vantages.iter().cloned().collect(),
            })
            .collect();
        out.sort_by(|a, b| {
            b.sites
                .cmp(&a.sites)
                .then(a.page_sha256.cmp(&b.page_sha256))
        });
        out
    }
}

/// The cluster keys of a stored measurement, for `compare` and `report`:
/// `(host, probe page, control page)` when its final page is one the run
/// would have registered — a cleartext page (or one over a refused
/// certificate) judged a blockpage or left inconclusive, whose text differs
/// from the control's.
pub fn page_key_of(m: &Measurement) -> Option<(String, PageKey, PageKey)> {
    let v = m.test_keys.x_verdict.as_ref()?;
    let http_block = v.status == VerdictStatus::Blocked
        && v.mechanism
            .as_deref()
            .is_some_and(|s| s.starts_with("http.") || s == "tls.mitm");
    if !(http_block || v.status == VerdictStatus::Inconclusive || v.cluster.is_some()) {
        return None;
    }
    let tx = m.test_keys.requests.first()?;
    if tx.response.code <= 0 || tx.failure.is_some() {
        return None;
    }
    let https = tx.request.url.starts_with("https:");
    if https && v.mechanism.as_deref() != Some("tls.mitm") {
        return None;
    }
    let ctl = m.test_keys.control.as_ref()?;
    let ctext = ctl.x_body_text.as_ref()?;
    let body = tx.response.body.to_bytes();
    let mut page = PageKey::of_body(&body);
    if !tx.response.x_body_sha256.is_empty() {
        page.sha256 = tx.response.x_body_sha256.to_ascii_lowercase();
    }
    if pagetext::similarity(&page.sketch, &ctext.sketch).is_some_and(|s| s >= SAME_TEXT) {
        return None;
    }
    let control = PageKey {
        sha256: ctl
            .x_body
            .as_ref()
            .map(|b| b.sha256.clone())
            .unwrap_or_default(),
        sketch: ctext.sketch.clone(),
    };
    let host = url::Url::parse(m.input.as_deref()?)
        .ok()?
        .host_str()?
        .to_ascii_lowercase();
    Some((host, page, control))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> PageKey {
        PageKey::of_body(text.as_bytes())
    }

    const BLOCK: &str = "access denied website blocked this site has been blocked by order";

    #[test]
    fn the_second_unrelated_site_makes_a_cluster() {
        let r = Registry::new();
        let site_a = key("phnom penh daily news budget assembly reporters session");
        let site_b = key("human rights watch report cambodia elections opposition");
        assert_eq!(r.add(&key(BLOCK), "a.example", &site_a, ""), None);
        // The same host again is not a second site.
        assert_eq!(r.add(&key(BLOCK), "a.example", &site_a, ""), None);
        // Near-identical text (the blocked URL named in the page) clusters.
        let c = r
            .add(
                &key(&format!("{BLOCK} b.example")),
                "b.example",
                &site_b,
                "",
            )
            .unwrap();
        assert_eq!(c.sites, 2);
        assert_eq!(c.page_sha256, key(BLOCK).sha256);
        let all = r.clusters();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].hosts, vec!["a.example", "b.example"]);
    }

    #[test]
    fn sites_with_the_same_control_page_are_one_site() {
        let r = Registry::new();
        let parked = key("this domain is for sale contact the owner buy now today");
        assert_eq!(r.add(&key(BLOCK), "a.example", &parked, ""), None);
        assert_eq!(r.add(&key(BLOCK), "b.example", &parked, ""), None);
        // Different pages for two sites do not cluster.
        let other = key("welcome to our shop new arrivals sale shoes bags");
        assert_eq!(r.add(&other, "c.example", &parked, ""), None);
        assert!(r.clusters().is_empty());
    }
}
