//! The Citizen Lab category codes we know, with their names: what
//! `run --category` accepts and what the report prints beside a code.

/// (code, name), in the Citizen Lab test lists' spelling.
pub const KNOWN: &[(&str, &str)] = &[
    ("ALDR", "Alcohol and drugs"),
    ("ANON", "Anonymization and circumvention"),
    ("COMM", "E-commerce"),
    ("COMT", "Communication tools"),
    ("CTRL", "Control content"),
    ("CULTR", "Culture"),
    ("DATE", "Online dating"),
    ("ECON", "Economics"),
    ("ENV", "Environment"),
    ("FEXP", "Freedom of expression"),
    ("FILE", "File sharing"),
    ("GAME", "Gaming"),
    ("GMB", "Gambling"),
    ("GOVT", "Government"),
    ("GRP", "Social networking"),
    ("HACK", "Hacking tools"),
    ("HATE", "Hate speech"),
    ("HOST", "Hosting and blogging"),
    ("HUMR", "Human rights"),
    ("IGO", "Intergovernmental organizations"),
    ("LGBT", "LGBTQ+"),
    ("MILT", "Military"),
    ("MILX", "Terrorism and militants"),
    ("MISC", "Miscellaneous"),
    ("MMED", "Media sharing"),
    ("NEWS", "News media"),
    ("POLR", "Political criticism"),
    ("PORN", "Pornography"),
    ("PROV", "Provocative attire"),
    ("PUBH", "Public health"),
    ("REL", "Religion"),
    ("SRCH", "Search engines"),
    ("WOMR", "Women's rights"),
    ("XED", "Sex education"),
];

/// The name of a known code.
pub fn name(code: &str) -> Option<&'static str> {
    KNOWN.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// `--category` (or `category` in the config) named a code we do not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown category {code:?}; known codes: {}", KNOWN.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", "))]
pub struct UnknownCategory {
    /// The code given.
    pub code: String,
}

/// Checks upper-case codes; the first unknown one is the error.
pub fn check(codes: &[String]) -> Result<(), UnknownCategory> {
    match codes.iter().find(|c| name(c).is_none()) {
        Some(c) => Err(UnknownCategory { code: c.clone() }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_are_named_with_the_known_ones() {
        check(&["NEWS".into(), "HUMR".into()]).unwrap();
        let e = check(&["NEWS".into(), "FOO".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("unknown category \"FOO\"; known codes: ALDR, ANON,"),
            "{e}"
        );
        assert!(e.contains("NEWS") && e.ends_with("XED"), "{e}");
    }
}
