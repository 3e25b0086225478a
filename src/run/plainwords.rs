//! Mechanism names (`dns.nxdomain`, `tls.reset`, ...) in plain words, in
//! Khmer and English: the one table the run summary, `gatewatch show` and
//! the HTML report's legend use. A mechanism we have no words for is shown
//! as its code.

use super::strings::Lang;

/// (mechanism, English, Khmer).
pub const MECHANISMS: &[(&str, &str, &str)] = &[
    (
        "dns.nxdomain",
        "the name was refused by your provider's DNS (it said the site does not exist)",
        "DNS របស់អ្នកផ្តល់សេវាបានបដិសេធឈ្មោះនេះ (វាថាគេហទំព័រនេះមិនមាន)",
    ),
    (
        "dns.servfail",
        "your provider's DNS failed on purpose for this name",
        "DNS របស់អ្នកផ្តល់សេវាបានបរាជ័យដោយចេតនាចំពោះឈ្មោះនេះ",
    ),
    (
        "dns.no_answer",
        "your provider's DNS gave no address for this name",
        "DNS របស់អ្នកផ្តល់សេវាមិនបានផ្តល់អាសយដ្ឋានសម្រាប់ឈ្មោះនេះ",
    ),
    (
        "dns.timeout",
        "your provider's DNS never answered for this name",
        "DNS របស់អ្នកផ្តល់សេវាមិនដែលឆ្លើយតបសម្រាប់ឈ្មោះនេះ",
    ),
    (
        "dns.localhost",
        "the name was pointed at your own computer (127.0.0.1) instead of the site",
        "ឈ្មោះនេះត្រូវបានបង្វែរទៅកុំព្យូទ័ររបស់អ្នកផ្ទាល់ (127.0.0.1) ជំនួសឱ្យគេហទំព័រ",
    ),
    (
        "dns.bogon",
        "the name was pointed at a private address that is not the site",
        "ឈ្មោះនេះត្រូវបានបង្វែរទៅអាសយដ្ឋានឯកជនដែលមិនមែនជាគេហទំព័រ",
    ),
    (
        "dns.sinkhole",
        "the name was pointed at a server that shows a blocking page",
        "ឈ្មោះនេះត្រូវបានបង្វែរទៅម៉ាស៊ីនមេដែលបង្ហាញទំព័របិទ",
    ),
    (
        "dns.injected",
        "a forged DNS answer was sent before the real one",
        "ចម្លើយ DNS ក្លែងក្លាយត្រូវបានផ្ញើមុនចម្លើយពិត",
    ),
    (
        "dns.non_resolver_answer",
        "a DNS answer came from an address that is not a DNS server",
        "ចម្លើយ DNS បានមកពីអាសយដ្ឋានដែលមិនមែនជាម៉ាស៊ីនមេ DNS",
    ),
    (
        "dns.duplicate_replies",
        "two different DNS answers arrived for one question (one forged)",
        "ចម្លើយ DNS ពីរផ្សេងគ្នាបានមកដល់សម្រាប់សំណួរតែមួយ (មួយក្លែងក្លាយ)",
    ),
    (
        "dns.ttl_mismatch",
        "a DNS answer came from a different distance than the resolver (likely forged on the way)",
        "ចម្លើយ DNS បានមកពីចម្ងាយខុសពីម៉ាស៊ីនមេ DNS (ទំនងជាក្លែងក្លាយនៅតាមផ្លូវ)",
    ),
    (
        "dns.diverted",
        "the name led to a middlebox that passed the site through",
        "ឈ្មោះនេះនាំទៅឧបករណ៍កណ្តាលដែលបញ្ជូនគេហទំព័របន្ត",
    ),
    (
        "tcp.timeout",
        "connections to the site's address were silently dropped",
        "ការតភ្ជាប់ទៅអាសយដ្ឋានគេហទំព័រត្រូវបានបោះចោលដោយស្ងាត់",
    ),
    (
        "tcp.refused",
        "connections to the site's address were refused on the way",
        "ការតភ្ជាប់ទៅអាសយដ្ឋានគេហទំព័រត្រូវបានបដិសេធនៅតាមផ្លូវ",
    ),
    (
        "tcp.unreachable",
        "the network said the site's address cannot be reached",
        "បណ្តាញបាននិយាយថាមិនអាចទៅដល់អាសយដ្ឋានគេហទំព័របាន",
    ),
    (
        "tcp.rst_ttl_mismatch",
        "a connection was cut by a forged reset",
        "ការតភ្ជាប់ត្រូវបានកាត់ដោយសញ្ញា reset ក្លែងក្លាយ",
    ),
    (
        "tls.reset",
        "the secure connection was cut when the site's name was seen",
        "ការតភ្ជាប់សុវត្ថិភាពត្រូវបានកាត់នៅពេលឃើញឈ្មោះគេហទំព័រ",
    ),
    (
        "tls.eof",
        "the secure connection was closed when the site's name was seen",
        "ការតភ្ជាប់សុវត្ថិភាពត្រូវបានបិទនៅពេលឃើញឈ្មោះគេហទំព័រ",
    ),
    (
        "tls.timeout",
        "the secure connection stalled when the site's name was seen",
        "ការតភ្ជាប់សុវត្ថិភាពបានជាប់គាំងនៅពេលឃើញឈ្មោះគេហទំព័រ",
    ),
    (
        "tls.mitm",
        "someone answered in the site's place with a certificate that is not the site's",
        "មាននរណាម្នាក់ឆ្លើយជំនួសគេហទំព័រ ដោយប្រើវិញ្ញាបនបត្រដែលមិនមែនរបស់គេហទំព័រ",
    ),
    (
        "http.blockpage",
        "a blocking page was shown instead of the site",
        "ទំព័របិទត្រូវបានបង្ហាញជំនួសគេហទំព័រ",
    ),
    (
        "http.redirect_to_blockpage",
        "the request was sent on to a blocking page",
        "សំណើត្រូវបានបញ្ជូនបន្តទៅទំព័របិទ",
    ),
    (
        "http.reset",
        "the web request was cut on the way",
        "សំណើគេហទំព័រត្រូវបានកាត់នៅតាមផ្លូវ",
    ),
    (
        "http.eof",
        "the web request was closed on the way",
        "សំណើគេហទំព័រត្រូវបានបិទនៅតាមផ្លូវ",
    ),
    (
        "http.timeout",
        "the web request stalled on the way",
        "សំណើគេហទំព័របានជាប់គាំងនៅតាមផ្លូវ",
    ),
    (
        "throttling",
        "the site loaded, but far slower than it should",
        "គេហទំព័របានបើក ប៉ុន្តែយឺតជាងធម្មតាច្រើន",
    ),
    (
        "server_side",
        "the site itself refused (not censorship)",
        "គេហទំព័រខ្លួនឯងបានបដិសេធ (មិនមែនការបិទដោយអ្នកផ្តល់សេវា)",
    ),
];

/// `mechanism` in plain words in `lang`; the code itself when unknown.
pub fn describe(mechanism: &str, lang: Lang) -> &str {
    MECHANISMS
        .iter()
        .find(|(code, _, _)| *code == mechanism)
        .map(|(_, en, km)| match lang {
            Lang::En => *en,
            Lang::Km => *km,
        })
        .unwrap_or(mechanism)
}

/// The progress words: (URLs done, anomalies, time left).
pub fn progress_words(lang: Lang) -> (&'static str, &'static str, &'static str) {
    match lang {
        Lang::En => ("URLs done", "anomalies", "ETA"),
        Lang::Km => ("URL រួចរាល់", "ភាពមិនប្រក្រតី", "នៅសល់"),
    }
}

/// What is printed when Ctrl-C or SIGTERM stops a run.
pub fn interrupted(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "gatewatch: interrupted; writing the URLs in flight and stopping",
        Lang::Km => "gatewatch: បានផ្អាក; កំពុងរក្សាទុក URL ដែលកំពុងវាស់ ហើយបញ្ឈប់",
    }
}

/// What to do next, after the summary: where the evidence is and how to
/// make a report of `file`.
pub fn next_steps(lang: Lang, file: &std::path::Path) -> String {
    let f = file.display();
    match lang {
        Lang::En => format!(
            "Next: the evidence for one URL: gatewatch show URL; all runs: gatewatch runs; a report to share: gatewatch report {f} --html report.html"
        ),
        Lang::Km => format!(
            "បន្ទាប់: ភស្តុតាងសម្រាប់ URL មួយ: gatewatch show URL; ការវាស់ទាំងអស់: gatewatch runs; របាយការណ៍សម្រាប់ចែករំលែក: gatewatch report {f} --html report.html"
        ),
    }
}

/// The line before a refusal's (English) reason, in Khmer; `None` in
/// English, where the reason says it all. `busy`: another run holds the
/// lock.
pub fn refused(lang: Lang, busy: bool) -> Option<&'static str> {
    match (lang, busy) {
        (Lang::En, _) => None,
        (Lang::Km, false) => {
            Some("មិនបានវាស់អ្វីទេ៖ មានបញ្ហាជាមួយជម្រើស ការកំណត់ ឬបញ្ជីដែលបានផ្តល់ (មូលហេតុខាងក្រោមជាភាសាអង់គ្លេស)")
        }
        (Lang::Km, true) => Some("មិនបានវាស់អ្វីទេ៖ ការវាស់មួយទៀតកំពុងដំណើរការរួចហើយ"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mechanism_has_words_in_both_languages() {
        let mut seen = std::collections::HashSet::new();
        for (code, en, km) in MECHANISMS {
            assert!(seen.insert(*code), "{code} twice");
            assert!(!en.is_empty() && !km.is_empty(), "{code}");
            assert!(
                km.chars().any(|c| ('\u{1780}'..='\u{17FF}').contains(&c)),
                "{code}"
            );
        }
        assert_eq!(
            describe("dns.nxdomain", Lang::En),
            "the name was refused by your provider's DNS (it said the site does not exist)"
        );
        assert_eq!(describe("made.up", Lang::Km), "made.up");
    }

    #[test]
    fn every_mechanism_the_analysis_names_has_words() {
        let sources = [
            include_str!("../analysis/verdict.rs"),
            include_str!("../analysis/hopdns.rs"),
            include_str!("../analysis/cluster.rs"),
            include_str!("../analysis/observe.rs"),
            include_str!("../web/injection.rs"),
        ];
        let mut missing = Vec::new();
        for src in sources {
            for piece in src.split('"').skip(1).step_by(2) {
                let (layer, rest) = piece.split_once('.').unwrap_or(("", ""));
                let named = ["dns", "tcp", "tls", "http"].contains(&layer)
                    && !rest.is_empty()
                    && rest.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                if named && describe(piece, Lang::En) == piece {
                    missing.push(piece.to_string());
                }
            }
        }
        assert!(missing.is_empty(), "no plain words for {missing:?}");
    }
}
