//! Diagnostics for policy files: a problem, where it is (file:line:column), and what to do.
//!
//! Owns the conversion from Cedar's `miette` diagnostics (byte-offset source spans) to
//! 1-based line and column numbers. It must not decide anything about authorization.

use std::fmt;

/// One problem found in a policy file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in (as given to the validator: a path or a name).
    pub file: String,
    /// 1-based line; 0 when the problem concerns the whole file (e.g. it cannot be read).
    pub line: usize,
    /// 1-based column, in characters; 0 when the problem concerns the whole file.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when known.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic about a whole file (line and column 0).
    pub(crate) fn whole_file(
        file: impl Into<String>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            line: 0,
            column: 0,
            message: message.into(),
            help,
        }
    }

    /// A diagnostic at byte `offset` of `text`.
    pub(crate) fn at(
        file: impl Into<String>,
        text: &str,
        offset: usize,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        let (line, column) = line_column(text, offset);
        Diagnostic {
            file: file.into(),
            line,
            column,
            message: message.into(),
            help,
        }
    }

    /// Builds a diagnostic from one of Cedar's errors, whose labels carry byte offsets
    /// into `text`. Without a label the diagnostic points at `fallback_offset`.
    pub(crate) fn from_miette(
        file: &str,
        text: &str,
        error: &dyn miette::Diagnostic,
        fallback_offset: usize,
    ) -> Self {
        let mut offset = fallback_offset;
        let mut label_text = None;
        if let Some(mut labels) = error.labels() {
            // The primary label if there is one, else the first.
            let all: Vec<miette::LabeledSpan> = labels.by_ref().collect();
            if let Some(label) = all.iter().find(|l| l.primary()).or_else(|| all.first()) {
                offset = label.offset();
                label_text = label.label().map(str::to_owned);
            }
        }
        let mut message = error.to_string();
        if let Some(label) = label_text
            && !label.is_empty()
            && !message.contains(&label)
        {
            message = format!("{message} ({label})");
        }
        let help = error.help().map(|h| h.to_string());
        Diagnostic::at(file, text, offset, message, help)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// What a valid set of policy files contains.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// How many files were read.
    pub files: usize,
    /// How many `permit` policies they hold.
    pub permits: usize,
    /// How many `forbid` policies they hold.
    pub forbids: usize,
    /// Things that are valid but probably not meant (e.g. a policy that can never apply).
    pub warnings: Vec<Diagnostic>,
}

impl Summary {
    /// All policies: permits and forbids.
    pub fn policies(&self) -> usize {
        self.permits + self.forbids
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`. An offset
/// past the end points just after the last character; an offset inside a multi-byte
/// character points at that character.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The byte offset of a 1-based line and column: the inverse of [`line_column`].
    fn offset_of(text: &str, line: usize, column: usize) -> Option<usize> {
        let mut start = 0;
        for _ in 1..line {
            start += text[start..].find('\n')? + 1;
        }
        let rest = &text[start..];
        let skip: usize = rest.chars().take(column - 1).map(char::len_utf8).sum();
        Some(start + skip)
    }

    #[test]
    fn positions() {
        let text = "ab\ncd\n\né";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 1), (1, 2));
        assert_eq!(line_column(text, 2), (1, 3)); // the newline itself
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 6), (3, 1));
        assert_eq!(line_column(text, 7), (4, 1));
        // Inside the two-byte 'é': points at it.
        assert_eq!(line_column(text, 8), (4, 1));
        // Past the end.
        assert_eq!(line_column(text, 1000), (4, 2));
        assert_eq!(line_column("", 5), (1, 1));
    }

    #[test]
    fn display_names_file_line_column_and_help() {
        let d = Diagnostic::at("p.cedar", "x\n  y", 4, "bad y", Some("use z".into()));
        assert_eq!(d.to_string(), "p.cedar:2:3: bad y\n  help: use z");
        let w = Diagnostic::whole_file("p.cedar", "unreadable", None);
        assert_eq!(w.to_string(), "p.cedar: unreadable");
    }

    proptest! {
        #[test]
        fn line_column_round_trips(text in "(?s).{0,200}", pick in any::<prop::sample::Index>()) {
            let boundaries: Vec<usize> = text
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(text.len()))
                .collect();
            let offset = boundaries[pick.index(boundaries.len())];
            let (line, column) = line_column(&text, offset);
            prop_assert!(line >= 1 && column >= 1);
            prop_assert_eq!(offset_of(&text, line, column), Some(offset));
        }
    }
}
