//! The probe's final page against the control's, by what they say: text
//! similarity of the visible text (the control's `x_body_text` sketch),
//! title similarity, and the blockpage and challenge words only the probe's
//! page has. Thresholds are in [`super::pagetext`].

use probes::records::HttpTransaction;

use crate::control::protocol::ControlResponse;

use super::cluster::PageKey;
use super::lexicon;
use super::observe;
use super::pagetext::{self, FULL_PAGE_WORDS};

/// How the probe's page compares with the control's.
#[derive(Clone, Debug, Default)]
pub(crate) struct PageCmp {
    /// The probe page's key (body hash and text sketch).
    pub key: PageKey,
    /// Visible words on the probe's page.
    pub words: u32,
    /// Text similarity with the control's page; `None` when the control
    /// sent no text fingerprint or either page has too little text.
    pub text_sim: Option<f64>,
    /// Title similarity.
    pub title_sim: f64,
    /// Blocking terms on the probe's page that the control's page lacks
    /// (the control's terms unknown: its title and body prefix are checked).
    pub block_terms: Vec<String>,
    /// Challenge terms on the probe's page that the control's lacks.
    pub challenge_terms: Vec<String>,
}

impl PageCmp {
    /// The probe's page is a notice rather than a full page.
    pub fn short(&self) -> bool {
        self.words < FULL_PAGE_WORDS
    }

    /// "text similarity 0.05, title similarity 0.00".
    pub fn describe(&self) -> String {
        match self.text_sim {
            Some(t) => format!(
                "text similarity {t:.2}, title similarity {:.2}",
                self.title_sim
            ),
            None => format!("title similarity {:.2}", self.title_sim),
        }
    }
}

/// Compares `tx` with the control's page.
pub(crate) fn compare(tx: &HttpTransaction, ctl: Option<&ControlResponse>) -> PageCmp {
    let body = tx.response.body.to_bytes();
    let text = pagetext::visible_text(&String::from_utf8_lossy(&body));
    let print = pagetext::fingerprint(&String::from_utf8_lossy(&body));
    let mut key = PageKey {
        sha256: tx.response.x_body_sha256.to_ascii_lowercase(),
        sketch: print.sketch,
    };
    if key.sha256.is_empty() {
        key.sha256 = PageKey::of_body(&body).sha256;
    }
    let ctl_text = ctl.and_then(|c| c.x_body_text.as_ref());
    let ctl_title = ctl.map(|c| c.http_request.title.as_str()).unwrap_or("");
    let ctl_known = ctl_title.to_lowercase()
        + " "
        + &ctl
            .and_then(|c| c.x_body.as_ref())
            .map(|b| pagetext::visible_text(&b.prefix))
            .unwrap_or_default();
    let block_terms = print
        .block_terms
        .into_iter()
        .filter(|t| match ctl_text {
            Some(c) => !c.block_terms.contains(t),
            None => !ctl_known.contains(t.as_str()),
        })
        .collect();
    let challenge_terms = lexicon::challenge_terms(&text)
        .into_iter()
        .filter(|t| !ctl_known.contains(t.as_str()))
        .collect();
    PageCmp {
        text_sim: ctl_text.and_then(|c| pagetext::similarity(&key.sketch, &c.sketch)),
        key,
        words: print.words,
        title_sim: pagetext::title_similarity(&observe::title_of(tx), ctl_title),
        block_terms,
        challenge_terms,
    }
}
