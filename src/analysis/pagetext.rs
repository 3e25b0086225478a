//! What a page says: its visible text (markup, scripts and styles removed),
//! a compact fingerprint of that text, and how similar two fingerprints are.
//!
//! The fingerprint is a **bottom-k sketch** of the text's features: the
//! [`SKETCH_SIZE`] smallest 32-bit FNV-1a hashes of its distinct features.
//! Features are lower-case words for scripts written with spaces, and
//! character trigrams inside runs of Khmer, Thai, Lao and Burmese (written
//! without spaces between words). Two sketches estimate the Jaccard
//! similarity of the two feature sets (exactly, for pages with fewer than
//! [`SKETCH_SIZE`] distinct features). The control sends its page's sketch
//! (`x_body_text` in the control response, at most 128 numbers), so the
//! probe compares text, not lengths or server software.
//!
//! # Thresholds (measured: `cargo test --lib pagetext::tests::measure -- --nocapture`)
//! Word-set similarity on synthetic 400-word pages, one word in three from
//! a pool of 100 common words (the function words every page of a language
//! shares):
//! - the same page with 40 % of its words replaced on every request (one
//!   changing block, or every few words a token/date; 40 draws) scores
//!   **0.35–0.53**;
//! - two different sites' pages score **0.14** (the common words only), and
//!   a 15-word blockpage against the site it replaces **0.00**.
//!
//! So [`SAME_TEXT`] = 0.25 sits between the two, ≥ 0.1 from each. Pages
//! near-identical as blockpages ([`SAME_BLOCKPAGE`] = 0.8) differ by the
//! blocked URL a page names. A page is "full" at [`FULL_PAGE_WORDS`] = 120
//! visible words: blockpages are notices (Cogetel's "ERROR: Forbidden" page
//! has 6 visible words, the lab's blockpage 19, its 490-byte look-alike
//! "Access Denied" page 48; `tests::blockpages_are_shorter_than_a_full_page`),
//! a site's front page has hundreds. Blocking words (see [`super::lexicon`]) count only on a
//! page shorter than that, where they are the page's message and not one
//! article's subject. Both sides of each threshold are tested (here and in
//! `tests/integration/verdicts/real_pages.rs`).

use super::lexicon;

/// A body's text fingerprint (sent by the control as `x_body_text`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TextPrint {
    /// Visible words (an estimate for scripts written without spaces).
    pub words: u32,
    /// The smallest [`SKETCH_SIZE`] feature hashes, sorted, distinct.
    pub sketch: Vec<u32>,
    /// Blocking-lexicon terms in the text.
    pub block_terms: Vec<String>,
}

/// Hashes kept in a sketch.
pub const SKETCH_SIZE: usize = 128;
/// Text similarity at or above which two pages say the same thing.
pub const SAME_TEXT: f64 = 0.25;
/// Text similarity at or above which two probe-side pages are the same
/// blockpage (clustering): a blockpage that names the blocked URL differs
/// from its twin by a word or two.
pub const SAME_BLOCKPAGE: f64 = 0.8;
/// Title similarity at or above which two titles name the same site.
pub const SAME_TITLE: f64 = 0.5;
/// Visible words from which a page is a full page rather than a notice.
pub const FULL_PAGE_WORDS: u32 = 120;
/// Fewer distinct features than this on either side: too little text to
/// compare (a script-only page, an empty 200).
pub const MIN_FEATURES: usize = 4;
/// Bytes of a body looked at (bodies are capped before this anyway).
const MAX_SCAN: usize = 1 << 20;

/// The visible text of an HTML (or plain) body: tags, comments, scripts,
/// styles and templates removed, common entities decoded, whitespace
/// collapsed, lower case.
pub fn visible_text(html: &str) -> String {
    let html = &html[..floor_char(html, MAX_SCAN)];
    let lower = html.to_lowercase();
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = lower.as_str();
    while let Some(lt) = rest.find('<') {
        push_text(&mut out, &rest[..lt]);
        rest = &rest[lt..];
        if let Some(r) = rest.strip_prefix("<!--") {
            rest = r.find("-->").map_or("", |e| &r[e + 3..]);
            continue;
        }
        let name: String = rest[1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let Some(gt) = rest.find('>') else {
            rest = "";
            break;
        };
        rest = &rest[gt + 1..];
        if matches!(
            name.as_str(),
            "script" | "style" | "noscript" | "template" | "svg"
        ) {
            let close = format!("</{name}");
            rest = rest
                .find(&close)
                .map_or("", |e| &rest[e..])
                .split_once('>')
                .map_or("", |(_, r)| r);
        }
        out.push(' ');
    }
    push_text(&mut out, rest);
    out.to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn floor_char(s: &str, n: usize) -> usize {
    if n >= s.len() {
        return s.len();
    }
    (0..=n).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0)
}

fn push_text(out: &mut String, t: &str) {
    let mut rest = t;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[..rest.len().min(10)].find(';');
        let decoded = end.and_then(|e| entity(&rest[1..e]).map(|c| (c, e)));
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
}

fn entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        _ => {
            let n = name.strip_prefix('#')?;
            let v = match n.strip_prefix('x') {
                Some(h) => u32::from_str_radix(h, 16).ok()?,
                None => n.parse().ok()?,
            };
            char::from_u32(v)?
        }
    })
}

/// Khmer, Thai, Lao or Burmese: scripts written without spaces.
fn unspaced(c: char) -> bool {
    matches!(c as u32, 0x0E00..=0x0EFF | 0x1780..=0x17FF | 0x19E0..=0x19FF | 0x1000..=0x109F)
}

/// The distinct feature hashes of a visible text, and its word count.
fn features(text: &str) -> (Vec<u32>, u32) {
    let mut hashes = Vec::new();
    let mut words = 0u32;
    for token in text.split(|c: char| !(c.is_alphanumeric() || unspaced(c))) {
        if token.is_empty() {
            continue;
        }
        let chars: Vec<char> = token.chars().collect();
        if chars.iter().any(|c| unspaced(*c)) {
            // Roughly one word per four characters of an unspaced script.
            words = words.saturating_add(u32::try_from(chars.len().div_ceil(4)).unwrap_or(1));
            if chars.len() < 3 {
                hashes.push(fnv1a(token.as_bytes()));
            }
            for w in chars.windows(3) {
                let s: String = w.iter().collect();
                hashes.push(fnv1a(s.as_bytes()));
            }
        } else {
            words = words.saturating_add(1);
            hashes.push(fnv1a(token.as_bytes()));
        }
    }
    hashes.sort_unstable();
    hashes.dedup();
    (hashes, words)
}

/// 32-bit FNV-1a: stable across versions and machines (the probe and the
/// control must agree).
fn fnv1a(b: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for x in b {
        h ^= u32::from(*x);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The fingerprint of a body: its sketch, word count and the blocking
/// words it contains. This is what the control sends as `x_body_text`.
pub fn fingerprint(body: &str) -> TextPrint {
    let text = visible_text(body);
    let (mut sketch, words) = features(&text);
    sketch.truncate(SKETCH_SIZE);
    TextPrint {
        words,
        sketch,
        block_terms: lexicon::block_terms(&text),
    }
}

/// Estimated Jaccard similarity of the feature sets behind two sketches
/// (sorted, distinct); `None` when either has fewer than [`MIN_FEATURES`]
/// features.
pub fn similarity(a: &[u32], b: &[u32]) -> Option<f64> {
    if a.len() < MIN_FEATURES || b.len() < MIN_FEATURES {
        return None;
    }
    // A full sketch is the smallest hashes of a larger set: hashes above
    // its largest may be missing from it, so only the union's hashes up to
    // the smaller such bound are comparable (all of them when both sets
    // are complete).
    let bound = |s: &[u32]| {
        if s.len() >= SKETCH_SIZE {
            s.last().copied().unwrap_or(u32::MAX)
        } else {
            u32::MAX
        }
    };
    let limit = bound(a).min(bound(b));
    let mut union: Vec<u32> = a
        .iter()
        .chain(b.iter())
        .copied()
        .filter(|h| *h <= limit)
        .collect();
    union.sort_unstable();
    union.dedup();
    let both = union
        .iter()
        .filter(|h| a.binary_search(h).is_ok() && b.binary_search(h).is_ok())
        .count();
    Some(both as f64 / union.len() as f64)
}

/// Similarity of two titles (word sets); two empty titles say nothing
/// (0.0).
pub fn title_similarity(a: &str, b: &str) -> f64 {
    let (fa, _) = features(&a.to_lowercase());
    let (fb, _) = features(&b.to_lowercase());
    if fa.is_empty() || fb.is_empty() {
        return 0.0;
    }
    let both = fa.iter().filter(|h| fb.binary_search(h).is_ok()).count();
    let union = fa.len() + fb.len() - both;
    both as f64 / union as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_text_drops_markup_scripts_and_comments() {
        let html = "<html><head><title>T</title><style>p{color:red}</style>\
            <script>var blocked = 1;</script></head><body><!-- blocked -->\
            <p>Hello&nbsp;&amp; <b>World</b></p><noscript>enable js</noscript>\
            caf&#233; &#x41;</body></html>";
        assert_eq!(visible_text(html), "t hello & world café a");
        assert_eq!(visible_text("plain  text\n"), "plain text");
        assert_eq!(visible_text("<p>cut <scr"), "cut");
        assert_eq!(visible_text("<script>never closed"), "");
    }

    #[test]
    fn khmer_text_has_features_without_spaces() {
        let (f, words) = features(&visible_text("<p>គេហទំព័រនេះត្រូវបានបិទ</p>"));
        assert!(f.len() > 10, "{f:?}");
        assert!(words >= 5);
    }

    #[test]
    fn similarity_is_exact_for_small_pages_and_symmetric() {
        let a = fingerprint("one two three four five six");
        let b = fingerprint("one two three four seven eight");
        assert_eq!(similarity(&a.sketch, &b.sketch), Some(4.0 / 8.0));
        assert_eq!(similarity(&b.sketch, &a.sketch), Some(0.5));
        assert_eq!(similarity(&a.sketch, &a.sketch), Some(1.0));
        assert_eq!(similarity(&a.sketch, &fingerprint("one").sketch), None);
    }

    #[test]
    fn titles() {
        assert_eq!(title_similarity("Daily News", "Daily News"), 1.0);
        assert!(title_similarity("Daily News - Home", "Daily News - Cambodia") >= SAME_TITLE);
        assert!(
            title_similarity("Access Denied - Website Blocked", "Phnom Penh Daily News")
                < SAME_TITLE
        );
        assert_eq!(title_similarity("", ""), 0.0);
    }

    /// Blockpages are short, front pages are not ([`FULL_PAGE_WORDS`]).
    #[test]
    fn blockpages_are_shorter_than_a_full_page() {
        let forbidden = "<html><head><title>ERROR: Forbidden</title></head> \n<body><h2>ERROR: Forbidden</h2><p>Access denied.</p></body></html>";
        let lab = "<html><head><title>Access to this website has been blocked</title></head><body>\
            <h1>Access to this website has been blocked</h1><p>By order of the authorities.</p></body></html>";
        let lookalike = "<html><head><title>Access Denied - Website Blocked</title></head><body><h1>Access Denied</h1>\
            <p>The website you are trying to visit has been blocked in accordance with the regulations of \
            the Kingdom. If you believe this is a mistake, contact your internet service provider's \
            customer care centre and quote the reference below.</p><p>Reference: KH-7731</p></body></html>";
        let counts: Vec<u32> = [forbidden, lab, lookalike]
            .iter()
            .map(|p| fingerprint(p).words)
            .collect();
        println!("blockpage words: {counts:?}");
        assert!(
            counts.iter().all(|n| *n < FULL_PAGE_WORDS / 2),
            "{counts:?}"
        );
        let para =
            "<p>Reporting from Phnom Penh: the national assembly met today to debate the budget; \
            farmers in the provinces describe the season; a court hears an appeal.</p>";
        let front = format!("<html><body>{}</body></html>", para.repeat(24));
        assert!(fingerprint(&front).words > FULL_PAGE_WORDS * 2);
    }

    /// A deterministic pseudo-random word (xorshift).
    fn word(state: &mut u64) -> String {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        format!("w{}", *state % 50_000)
    }

    /// `n` words, every third from a pool of 100 common words (function
    /// words every page of a language shares).
    fn page(seed: u64, n: usize) -> Vec<String> {
        let mut s = seed;
        (0..n)
            .map(|i| {
                let w = word(&mut s);
                if i % 3 == 0 {
                    format!("c{}", w[1..].parse::<u64>().unwrap_or(0) % 100)
                } else {
                    w
                }
            })
            .collect()
    }

    fn sim(a: &[String], b: &[String]) -> f64 {
        similarity(
            &fingerprint(&a.join(" ")).sketch,
            &fingerprint(&b.join(" ")).sketch,
        )
        .unwrap()
    }

    /// `frac` of the words replaced: in one block, or every n-th word.
    fn changed(base: &[String], frac: f64, block: bool, seed: u64) -> Vec<String> {
        let mut s = seed;
        let n = (base.len() as f64 * frac) as usize;
        let mut out = base.to_vec();
        if block {
            for w in out.iter_mut().take(n) {
                *w = word(&mut s);
            }
        } else {
            let step = (base.len() / n.max(1)).max(1);
            for w in out.iter_mut().step_by(step) {
                *w = word(&mut s);
            }
        }
        out
    }

    /// The measurements behind the thresholds (printed with --nocapture),
    /// asserted on both sides.
    #[test]
    fn measure() {
        let site = page(7, 400);
        let mut dynamic = Vec::new();
        for seed in 1..=20u64 {
            for block in [true, false] {
                dynamic.push(sim(&site, &changed(&site, 0.4, block, seed * 31)));
            }
        }
        let lo = dynamic.iter().copied().fold(1.0, f64::min);
        let hi = dynamic.iter().copied().fold(0.0, f64::max);
        let blockpage: Vec<String> = "access denied website blocked this website has been \
            blocked by order of the ministry of posts and telecommunications"
            .split(' ')
            .map(String::from)
            .collect();
        let bp = sim(&site, &blockpage);
        let other = sim(&site, &page(99, 400));
        println!("40% changed: {lo:.2}..{hi:.2}; blockpage vs site {bp:.2}; two sites {other:.2}");
        assert!(lo >= SAME_TEXT + 0.05, "dynamic {lo}");
        assert!(
            bp < SAME_TEXT - 0.1 && other < SAME_TEXT - 0.05,
            "{bp} {other}"
        );
        // A blockpage naming the blocked URL still clusters with its twin.
        let mut twin = blockpage.clone();
        twin.push("news.example".into());
        let mut twin2 = blockpage.clone();
        twin2.push("rights.example".into());
        assert!(sim(&twin, &twin2) >= SAME_BLOCKPAGE);
    }
}
