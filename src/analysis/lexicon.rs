//! Words a blockpage says, and words a challenge page says.
//!
//! **Supporting evidence, never alone.** A blocking term counts only on a
//! page that already differs in text from the control's, is short (a notice,
//! not a full page where "blocked" may be one article's subject), and only
//! when the control's page lacks the term. Challenge terms (CAPTCHA,
//! "checking your browser", "not available in your country") on a short
//! page mark a site's or its CDN's own page: they count against blocking,
//! and such a page is never clustered.
//!
//! Terms are matched as substrings of the lower-case visible text, so they
//! work for scripts written without spaces. The Khmer, Thai, Vietnamese,
//! Burmese and Lao phrases are the common wordings of "blocked", "access
//! denied/suspended", "prohibited" and "by order of the ministry"; native
//! readers should extend them from real blockpages.

/// Phrases of blockpages, lower case, per language.
pub const BLOCK_TERMS: &[(&str, &str)] = &[
    // English.
    ("en", "access denied"),
    ("en", "access to this website"),
    ("en", "access to this site"),
    ("en", "website blocked"),
    ("en", "site blocked"),
    ("en", "has been blocked"),
    ("en", "is blocked"),
    ("en", "been restricted"),
    ("en", "blocked by order"),
    ("en", "by order of"),
    ("en", "court order"),
    ("en", "not permitted"),
    ("en", "forbidden"),
    ("en", "web filter"),
    ("en", "url filter"),
    ("en", "content filter"),
    // Khmer.
    ("km", "ត្រូវបានបិទ"),
    ("km", "ត្រូវបានហាមឃាត់"),
    ("km", "ហាមឃាត់"),
    ("km", "បានបិទ"),
    ("km", "បដិសេធ"),
    ("km", "មិនអាចចូលមើល"),
    ("km", "មិនអាចចូលប្រើ"),
    ("km", "ក្រសួងប្រៃសណីយ៍"),
    // Thai.
    ("th", "ถูกระงับ"),
    ("th", "ถูกปิดกั้น"),
    ("th", "ระงับการเข้าถึง"),
    ("th", "ไม่สามารถเข้าถึง"),
    ("th", "กระทรวงดิจิทัล"),
    // Vietnamese.
    ("vi", "bị chặn"),
    ("vi", "truy cập bị từ chối"),
    ("vi", "không thể truy cập"),
    ("vi", "theo yêu cầu của"),
    ("vi", "bị cấm"),
    // Burmese.
    ("my", "ပိတ်ဆို့"),
    ("my", "ပိတ်ပင်"),
    ("my", "ဝင်ရောက်ခွင့်မရှိ"),
    // Lao.
    ("lo", "ຖືກບລັອກ"),
    ("lo", "ຖືກປິດກັ້ນ"),
    ("lo", "ຖືກລະງັບ"),
    ("lo", "ຫ້າມເຂົ້າ"),
];

/// Phrases of challenge, anti-bot and geo-restriction pages (a site's or
/// its CDN's own answer), lower case.
pub const CHALLENGE_TERMS: &[&str] = &[
    "not available in your country",
    "not available in your region",
    "captcha",
    "checking your browser",
    "verify you are human",
    "verifying you are human",
    "are you a robot",
    "not a robot",
    "just a moment",
    "attention required",
    "ddos protection",
    "enable javascript and cookies",
    "cloudflare ray id",
    "request unsuccessful. incapsula",
];

/// The blocking terms found in a lower-case visible text (each once, in
/// lexicon order).
pub fn block_terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, t) in BLOCK_TERMS {
        if text.contains(t) && !out.iter().any(|o| o == t) {
            out.push((*t).to_string());
        }
    }
    out
}

/// The challenge terms found in a lower-case visible text.
pub fn challenge_terms(text: &str) -> Vec<String> {
    CHALLENGE_TERMS
        .iter()
        .filter(|t| text.contains(*t))
        .map(|t| (*t).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::pagetext::visible_text;

    #[test]
    fn every_language_is_present_and_lower_case() {
        for lang in ["en", "km", "th", "vi", "my", "lo"] {
            assert!(BLOCK_TERMS.iter().any(|(l, _)| *l == lang), "{lang}");
        }
        for (_, t) in BLOCK_TERMS {
            assert_eq!(t.to_lowercase(), *t);
        }
    }

    #[test]
    fn finds_terms_in_pages() {
        let t = visible_text("<h1>Access Denied - Website Blocked</h1>");
        assert_eq!(
            block_terms(&t),
            vec!["access denied", "website blocked", "site blocked"]
        );
        let km = visible_text("<p>គេហទំព័រនេះត្រូវបានបិទ តាមការណែនាំរបស់ក្រសួងប្រៃសណីយ៍</p>");
        assert!(block_terms(&km).contains(&"ត្រូវបានបិទ".to_string()));
        let vi = visible_text("Trang web này đã bị chặn");
        assert_eq!(block_terms(&vi), vec!["bị chặn"]);
        assert!(block_terms(&visible_text("<p>Today's headlines</p>")).is_empty());
        let cf = visible_text("<title>Just a moment...</title><p>Checking your browser</p>");
        assert_eq!(
            challenge_terms(&cf),
            vec!["checking your browser", "just a moment"]
        );
        let geo = visible_text("<p>This programme is not available in your country.</p>");
        assert_eq!(challenge_terms(&geo), vec!["not available in your country"]);
    }
}
