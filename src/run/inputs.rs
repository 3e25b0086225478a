//! What to measure: positional URLs, `--input-file`s, `--list NAME`, or our
//! shipped Cambodian list; filtered by `--category`, duplicates removed, and
//! (with `--resume`) URLs already measured left out. Everything streams: the
//! only per-URL memory is a 64-bit hash for duplicate detection.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;

use crate::testlist::{self, Entry, ListReader, ListSource, RowWarning, TestListError};

/// Where the inputs come from.
#[derive(Clone, Debug)]
pub struct InputPlan {
    /// Command-line URLs (already checked).
    pub urls: Vec<String>,
    /// Lists, read in order.
    pub sources: Vec<ListSource>,
    /// Category codes to keep (empty: all).
    pub categories: Vec<String>,
}

/// A problem with the inputs (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A command-line URL is not measurable.
    #[error("{0}")]
    BadUrl(String),
    /// A list is unusable.
    #[error(transparent)]
    List(#[from] TestListError),
    /// An unknown `--list`.
    #[error("no list named {name:?}: {hint}")]
    UnknownList {
        /// The name given.
        name: String,
        /// What to do.
        hint: String,
    },
}

/// The directory `gatewatch lists update` downloads into.
pub fn downloaded_lists_dir() -> Option<PathBuf> {
    super::config::data_dir().map(|d| d.join("lists"))
}

/// Resolves `--list NAME`: the downloaded copy when there is one, else the
/// list we ship (only `kh`).
pub fn named_list(name: &str) -> Result<ListSource, InputError> {
    let name_lc = name.to_ascii_lowercase();
    if let Some(p) = downloaded_lists_dir().map(|d| d.join(format!("{name_lc}.csv"))) {
        if p.is_file() {
            return Ok(ListSource::File(p));
        }
    }
    if name_lc == "kh" {
        return Ok(shipped_kh());
    }
    Err(InputError::UnknownList {
        name: name.to_string(),
        hint: "run `gatewatch lists update` first (we ship only `kh`)".to_string(),
    })
}

/// Our curated Cambodian list.
pub fn shipped_kh() -> ListSource {
    ListSource::Embedded {
        name: "testlists/kh.csv (built in)".to_string(),
        text: Cow::Borrowed(testlist::SHIPPED_KH),
    }
}

impl InputPlan {
    /// Builds the plan; with no URL, file or list, the shipped `kh` list.
    pub fn new(
        urls: &[String],
        files: &[PathBuf],
        list: Option<&str>,
        categories: &[String],
    ) -> Result<InputPlan, InputError> {
        for u in urls {
            testlist::check_url(u).map_err(InputError::BadUrl)?;
        }
        let mut sources: Vec<ListSource> = files
            .iter()
            .map(|f| ListSource::for_path(f))
            .collect::<Result<_, _>>()?;
        if let Some(l) = list {
            sources.push(named_list(l)?);
        }
        if urls.is_empty() && sources.is_empty() {
            sources.push(shipped_kh());
        }
        Ok(InputPlan {
            urls: urls.to_vec(),
            sources,
            categories: categories.to_vec(),
        })
    }

    /// Opens every list up front (so a file that is not a list fails before
    /// anything is measured) and returns the stream of entries.
    pub fn open(&self, skip: HashSet<u64>) -> Result<InputStream, InputError> {
        let mut readers = Vec::new();
        for s in &self.sources {
            readers.push(testlist::open(s)?);
        }
        Ok(InputStream {
            urls: self.urls.clone().into_iter(),
            readers: readers.into_iter(),
            current: None,
            categories: self.categories.clone(),
            seen: HashSet::new(),
            skip,
            warnings: Vec::new(),
            skipped_done: 0,
        })
    }
}

/// The identity of a URL for de-duplication and resume (its normalised
/// form without `#fragment`, which is never sent to the server, hashed).
pub fn url_key(url: &str) -> u64 {
    let norm = url::Url::parse(url.trim())
        .map(|mut u| {
            u.set_fragment(None);
            u.to_string()
        })
        .unwrap_or_else(|_| url.trim().to_string());
    let mut h = DefaultHasher::new();
    norm.hash(&mut h);
    h.finish()
}

/// The entries to measure, lazily.
pub struct InputStream {
    urls: std::vec::IntoIter<String>,
    readers: std::vec::IntoIter<ListReader>,
    current: Option<ListReader>,
    categories: Vec<String>,
    seen: HashSet<u64>,
    skip: HashSet<u64>,
    warnings: Vec<RowWarning>,
    skipped_done: u64,
}

impl std::fmt::Debug for InputStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputStream").finish_non_exhaustive()
    }
}

impl InputStream {
    /// Row warnings collected so far (drained).
    pub fn take_warnings(&mut self) -> Vec<RowWarning> {
        std::mem::take(&mut self.warnings)
    }

    /// How many entries were left out because `--resume` found them done.
    pub fn skipped_done(&self) -> u64 {
        self.skipped_done
    }

    fn keep(&mut self, e: &Entry) -> bool {
        // URLs without a category (given on the command line, or from a
        // plain-text list) are not filtered out: the user asked for them.
        if !self.categories.is_empty()
            && !e.category_code.is_empty()
            && !self.categories.contains(&e.category_code)
        {
            return false;
        }
        let k = url_key(&e.url);
        if !self.seen.insert(k) {
            return false;
        }
        if self.skip.contains(&k) {
            self.skipped_done += 1;
            return false;
        }
        true
    }
}

impl Iterator for InputStream {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            let next = if let Some(u) = self.urls.next() {
                Entry {
                    url: u,
                    category_code: String::new(),
                }
            } else {
                if self.current.is_none() {
                    self.current = Some(self.readers.next()?);
                }
                match self.current.as_mut().and_then(Iterator::next) {
                    Some(Ok(e)) => e,
                    Some(Err(w)) => {
                        self.warnings.push(w);
                        continue;
                    }
                    None => {
                        self.current = None;
                        continue;
                    }
                }
            };
            if self.keep(&next) {
                return Some(next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_filter_and_skip() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("l.csv");
        std::fs::write(
            &f,
            "url,category_code,category_description,date_added,source,notes\n\
             https://a.example/,NEWS,News Media,2026-11-27,x,\n\
             https://A.example,NEWS,News Media,2026-11-27,x,\n\
             https://b.example/,HUMR,Human Rights Issues,2026-11-27,x,\n\
             https://c.example/,NEWS,News Media,2026-11-27,x,\n\
             https://a.example/#top,NEWS,News Media,2026-11-27,x,\n\
             https://a.example#,NEWS,News Media,2026-11-27,x,\n\
             bad,NEWS,News Media,2026-11-27,x,\n",
        )
        .unwrap();
        let plan = InputPlan::new(&[], &[f], None, &["NEWS".to_string()]).unwrap();
        let skip: HashSet<u64> = [url_key("https://c.example/")].into();
        let mut s = plan.open(skip).unwrap();
        let urls: Vec<String> = s.by_ref().map(|e| e.url).collect();
        assert_eq!(urls, vec!["https://a.example/"]);
        assert_eq!(s.skipped_done(), 1);
        assert_eq!(s.take_warnings().len(), 1);
        assert!(InputPlan::new(&["nope".to_string()], &[], None, &[]).is_err());
    }
}
