//! The one error type of this crate: a problem in a site's rule files, located by file and line.

/// Name of the redirects file at the root of a deployed folder.
pub const REDIRECTS_FILE: &str = "_redirects";
/// Name of the headers file at the root of a deployed folder.
pub const HEADERS_FILE: &str = "_headers";
/// Name of the configuration file at the root of a deployed folder.
pub const CONFIG_FILE: &str = "skyhost.toml";

/// Most errors reported for one site; past it one closing error says how many more there were,
/// so a broken generated file does not produce megabytes of output.
pub(crate) const MAX_REPORTED_ERRORS: usize = 1000;

/// A problem found in a rule file; displayed as `file:line: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct RuleError {
    /// The file the problem is in, e.g. `_redirects`.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong and, where it helps, what to write instead.
    pub reason: String,
}

impl RuleError {
    /// A new error at `file:line`.
    pub fn new(file: &str, line: usize, reason: impl Into<String>) -> Self {
        RuleError {
            file: file.to_string(),
            line,
            reason: reason.into(),
        }
    }
}

/// Collects errors up to [`MAX_REPORTED_ERRORS`], counting the rest.
#[derive(Debug, Default)]
pub(crate) struct ErrorSink {
    errors: Vec<RuleError>,
    dropped: usize,
}

impl ErrorSink {
    pub(crate) fn push(&mut self, error: RuleError) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(error);
        } else {
            self.dropped += 1;
        }
    }

    pub(crate) fn at(&mut self, file: &str, line: usize, reason: impl Into<String>) {
        self.push(RuleError::new(file, line, reason));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Errors seen so far, listed or not.
    pub(crate) fn len(&self) -> usize {
        self.errors.len() + self.dropped
    }

    /// All errors, plus one saying how many were not listed (never silently fewer).
    pub(crate) fn finish(mut self) -> Vec<RuleError> {
        if self.dropped > 0 {
            let last = self.errors.last().cloned();
            if let Some(last) = last {
                self.errors.push(RuleError::new(
                    &last.file,
                    last.line,
                    format!(
                        "{} more errors not listed; fix the ones above and deploy again",
                        self.dropped
                    ),
                ));
            }
        }
        self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_counts_listed_and_dropped_errors() {
        let mut sink = ErrorSink::default();
        assert_eq!(sink.len(), 0);
        for n in 0..MAX_REPORTED_ERRORS + 2 {
            sink.at("_redirects", n + 1, "bad");
            assert_eq!(sink.len(), n + 1);
        }
        assert!(!sink.is_empty());
        let listed = sink.finish();
        assert_eq!(listed.len(), MAX_REPORTED_ERRORS + 1);
        assert_eq!(
            listed[MAX_REPORTED_ERRORS].reason,
            "2 more errors not listed; fix the ones above and deploy again"
        );
    }
}
