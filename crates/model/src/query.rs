//! The NGSI-LD query language (`q`, ETSI GS CIM 009 v1.8 §4.9): parse and evaluate.
//!
//! This module owns the `q` grammar, its parse tree ([`Query`]), the tree's canonical
//! text ([`Query`]'s `Display`, which parses back to the same tree, so a subscription
//! can store it) and evaluation against an [`EntityState`]. It does no I/O and knows
//! nothing of HTTP or storage. It does not percent-decode (the HTTP layer does) and does
//! not expand names: the caller expands them against the request's `@context` with
//! [`Query::expand`] or [`Query::map_names`] before calling [`Query::matches`].
//!
//! # Grammar
//!
//! ```text
//! query     = and *( "|" and )
//! and       = primary *( ";" primary )
//! primary   = "(" query ")" / term
//! term      = attribute [ operator value ]
//! attribute = name *( "." name ) *( "[" member *( "." member ) "]" )
//! operator  = "==" / "!=" / ">" / ">=" / "<" / "<=" / "~=" / "!~="
//! ```
//!
//! **Precedence.** The specification's grammar leaves the precedence of `;` and `|`
//! open. Here `;` (AND) binds tighter than `|` (OR), as in Orion-LD and Stellio:
//! `a;b|c` is `(a;b)|c`. Parentheses group.
//!
//! - `name` is an attribute name: a short name, a compact IRI (`ex:speed`) or a full IRI
//!   (`https://uri.etsi.org/ngsi-ld/default-context/speed`). A name is any run of
//!   characters other than whitespace, control characters and `= ! < > ~ ; | ( ) [ ] " , .`
//!   — except that in a name holding a `:` (an IRI), dots up to its last `/` or `#`
//!   belong to the name, so `https://example.org/ns/speed.observedAt` is the attribute
//!   `https://example.org/ns/speed` and its `observedAt`; a dot followed by another IRI
//!   (`scheme://…` or `urn:…`) starts the next name, so expanded sub-attributes
//!   (`https://a.org/speed.https://a.org/accuracy`) read back. An IRI with a dot after
//!   its last `/` or `#`, or a short sub-attribute name holding `/` or `#` after an IRI,
//!   cannot be written.
//! - `.name` after the attribute names a sub-attribute: `observedAt`, `unitCode`,
//!   `datasetId`, `createdAt`, `modifiedAt` (core members), or a sub-property or
//!   sub-relationship (`speed.accuracy`), nested as deep as needed.
//! - `[member]` (or `[a.b]`, the same as `[a][b]`) follows members of a structured
//!   value: `address[addressLocality]`. A member that is a number also indexes an array.
//! - Whitespace between tokens is ignored; it is not allowed inside names or unquoted
//!   values.
//!
//! Values:
//!
//! | written | is |
//! |---|---|
//! | `21`, `-3.5`, `1e-3` | a number |
//! | `"free"` (`\"` and `\\` escape; other backslashes stay, for patterns) | a string |
//! | `true`, `false` | a boolean |
//! | `2018-12-04T12:00:00Z` | a date-time (RFC 3339, any offset; kept in UTC to the millisecond) |
//! | `2018-12-04` | a date |
//! | `12:00:00Z` | a time (`Z` optional) |
//! | `urn:ngsi-ld:Road:1` | a URI, compared as a string (a Relationship's `object`) |
//! | `1..10` (`==`/`!=` only) | an inclusive range of numbers, strings, date-times, dates or times |
//! | `"a","b",3` (`==`/`!=` only) | a list: `==` any of, `!=` none of |
//!
//! `~=` and `!~=` take a regular expression (Rust `regex` syntax, which has no
//! backtracking, so matching is linear in the text), quoted, or unquoted when it holds
//! none of `( ) | ;`, `"` or whitespace. It matches anywhere in the text; anchor it with
//! `^…$` to match the whole text.
//!
//! # Semantics
//!
//! - A term addresses the attribute's value: a Property's `value`, a Relationship's
//!   `object` (the entity id, as a string), a GeoProperty's GeoJSON; or the
//!   sub-attribute or member its path names.
//! - A term whose path does not exist in the entity is false, whatever its operator
//!   (`!=` and `!~=` included). A term without operator tests that the path exists.
//! - A multi-instance attribute (several `datasetId`s) matches if any instance does.
//! - Values of different types are unequal, as §4.9 says: a term comparing a string
//!   attribute with a number is false for `==`, `<`, `<=`, `>` and `>=`, and true for
//!   `!=` (`!=` is exactly "not `==`"). Patterns apply to strings (text values,
//!   Relationship objects, unit codes, datasetIds): `~=` and `!~=` on a number, boolean
//!   or structured value are both false.
//! - A date-time value compares with `observedAt` (and other date-time strings) in time
//!   order; a date with the UTC day of a date-time (`observedAt==2018-12-04` is "on that
//!   day"); a time with time strings.
//! - `==` against an array value is true when the array holds the value (any of the
//!   listed values, for a list; one in range, for a range); `!=` is its negation.
//! - `createdAt` and `modifiedAt` of an attribute are not tracked (Polity keeps them per
//!   entity), so terms on them are false.
//!
//! # Limits
//!
//! The text comes from the network: it may be at most [`MAX_LEN`] bytes, parentheses may
//! nest [`MAX_DEPTH`] deep, and it may hold [`MAX_PATTERNS`] patterns, each compiling to
//! at most [`MAX_PATTERN_SIZE`] bytes. Anything beyond is a [`QueryError`], never a panic
//! or a stack overflow.

use std::{cmp::Ordering, fmt, str::FromStr};

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Timelike};
use regex::{Regex, RegexBuilder};
use serde_json::Value as Json;

use crate::{
    entity::EntityState,
    id::is_absolute_uri,
    jsonld::Context,
    observation::{Observation, Value},
    time::Timestamp,
};

/// The longest `q` expression accepted, in bytes.
pub const MAX_LEN: usize = 4096;
/// How deep parentheses may nest.
pub const MAX_DEPTH: usize = 32;
/// How many pattern terms (`~=`, `!~=`) one expression may hold.
pub const MAX_PATTERNS: usize = 16;
/// The most memory one compiled pattern may take, in bytes.
pub const MAX_PATTERN_SIZE: usize = 64 * 1024;

const NGSI: &str = "https://uri.etsi.org/ngsi-ld/";

/// Sub-attribute names that are core members of an attribute, not sub-properties.
const CORE_MEMBERS: [&str; 5] = [
    "observedAt",
    "unitCode",
    "datasetId",
    "createdAt",
    "modifiedAt",
];

/// The core member `name` names, short or expanded.
fn core_member(name: &str) -> Option<&'static str> {
    let short = name.strip_prefix(NGSI).unwrap_or(name);
    CORE_MEMBERS.iter().copied().find(|c| *c == short)
}

/// A `q` expression that could not be parsed. Messages are written for the API user
/// and start with `q:`; the HTTP layer answers them as `BadRequestData`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The expression is longer than [`MAX_LEN`].
    #[error("q: the expression is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// Its length.
        len: usize,
        /// [`MAX_LEN`].
        max: usize,
    },
    /// Parentheses nest deeper than [`MAX_DEPTH`].
    #[error("q: parentheses nest deeper than {max} levels at byte {at}")]
    TooDeep {
        /// Byte offset of the `(` one level too deep.
        at: usize,
        /// [`MAX_DEPTH`].
        max: usize,
    },
    /// More than [`MAX_PATTERNS`] pattern terms.
    #[error("q: more than {max} pattern terms (`~=`, `!~=`); the one at byte {at} is one too many")]
    TooManyPatterns {
        /// Byte offset of the operator of the first pattern over the limit.
        at: usize,
        /// [`MAX_PATTERNS`].
        max: usize,
    },
    /// A pattern that is not a valid regular expression, or is too large.
    #[error("q: the pattern \"{pattern}\" at byte {at} is not usable: {reason}")]
    Pattern {
        /// Byte offset of the pattern.
        at: usize,
        /// The pattern (clipped to 64 characters).
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The text does not follow the grammar.
    #[error("q: {message}, at byte {at}")]
    Syntax {
        /// Byte offset where the problem is.
        at: usize,
        /// What was expected and what was found.
        message: String,
    },
}

impl QueryError {
    /// The byte offset in the expression the error points at, if any.
    pub fn offset(&self) -> Option<usize> {
        match self {
            QueryError::TooLong { .. } => None,
            QueryError::TooDeep { at, .. }
            | QueryError::TooManyPatterns { at, .. }
            | QueryError::Pattern { at, .. }
            | QueryError::Syntax { at, .. } => Some(*at),
        }
    }
}

/// A parsed `q` expression.
///
/// [`Query::parse`] never builds an `And` or `Or` with fewer than two operands, nor an
/// `And` directly inside an `And` (or `Or` inside `Or`) unless the text grouped it with
/// parentheses; `Display` prints exactly the parentheses needed to parse back to the
/// same tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// One term.
    Term(Term),
    /// All operands match (`;`).
    And(Vec<Query>),
    /// At least one operand matches (`|`).
    Or(Vec<Query>),
}

impl Query {
    /// Parses a `q` expression (already percent-decoded).
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        if text.len() > MAX_LEN {
            return Err(QueryError::TooLong {
                len: text.len(),
                max: MAX_LEN,
            });
        }
        Parser {
            src: text,
            pos: 0,
            patterns: 0,
        }
        .query()
    }

    /// Whether `entity` matches. Names must have been expanded to the IRIs the entity
    /// holds ([`Query::expand`]); a short name matches no stored attribute.
    pub fn matches(&self, entity: &EntityState) -> bool {
        match self {
            Query::Term(t) => t.matches(entity),
            Query::And(qs) => qs.iter().all(|q| q.matches(entity)),
            Query::Or(qs) => qs.iter().any(|q| q.matches(entity)),
        }
    }

    /// The attribute path of every term, in text order.
    pub fn paths(&self) -> impl Iterator<Item = &AttrPath> {
        fn walk<'a>(q: &'a Query, out: &mut Vec<&'a AttrPath>) {
            match q {
                Query::Term(t) => out.push(&t.path),
                Query::And(qs) | Query::Or(qs) => qs.iter().for_each(|q| walk(q, out)),
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out.into_iter()
    }

    /// The attribute path of every term, in text order, to change.
    pub fn paths_mut(&mut self) -> impl Iterator<Item = &mut AttrPath> {
        fn walk<'a>(q: &'a mut Query, out: &mut Vec<&'a mut AttrPath>) {
            match q {
                Query::Term(t) => out.push(&mut t.path),
                Query::And(qs) | Query::Or(qs) => qs.iter_mut().for_each(|q| walk(q, out)),
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out.into_iter()
    }

    /// Replaces every attribute name and sub-attribute name by `f(name)`: the hook for
    /// expanding names against an `@context`. Core members (`observedAt`, `unitCode`,
    /// `datasetId`, `createdAt`, `modifiedAt`) and `[…]` members of structured values
    /// are left as they are (values are not expanded).
    pub fn map_names(&mut self, mut f: impl FnMut(&str) -> String) {
        for p in self.paths_mut() {
            p.map_names(&mut f);
        }
    }

    /// Expands every attribute and sub-attribute name against `ctx`, as
    /// [`Query::map_names`] does with [`Context::expand_term`].
    pub fn expand(&mut self, ctx: &Context) {
        self.map_names(|n| ctx.expand_term(n).into_owned());
    }
}

impl FromStr for Query {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Query::parse(s)
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (qs, sep, and) = match self {
            Query::Term(t) => return t.fmt(f),
            Query::And(qs) => (qs, ';', true),
            Query::Or(qs) => (qs, '|', false),
        };
        for (i, q) in qs.iter().enumerate() {
            if i > 0 {
                write!(f, "{sep}")?;
            }
            // `;` binds tighter than `|`; a group of the same kind keeps its parentheses
            // so that the tree parses back unchanged.
            let grouped = match q {
                Query::Term(_) => false,
                Query::And(_) => and,
                Query::Or(_) => true,
            };
            if grouped {
                write!(f, "({q})")?;
            } else {
                write!(f, "{q}")?;
            }
        }
        Ok(())
    }
}

/// The part of an entity a term addresses: `name.sub.sub[member][member]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// The attribute: as written, or its expanded IRI after [`Query::expand`].
    pub name: String,
    /// Sub-attributes after `.`, outermost first: core members (`observedAt`, …) or
    /// sub-properties and sub-relationships (expanded like `name`).
    pub sub_attrs: Vec<String>,
    /// Members of a structured value after `[`…`]`, outermost first (never expanded).
    pub value_path: Vec<String>,
}

impl AttrPath {
    /// The path of a whole attribute.
    pub fn new(name: impl Into<String>) -> Self {
        AttrPath {
            name: name.into(),
            sub_attrs: Vec::new(),
            value_path: Vec::new(),
        }
    }

    fn map_names(&mut self, f: &mut impl FnMut(&str) -> String) {
        self.name = f(&self.name);
        for s in &mut self.sub_attrs {
            if core_member(s).is_none() {
                *s = f(s);
            }
        }
    }

    /// What this path addresses in one attribute instance, if it exists.
    fn resolve<'a>(&self, obs: &'a Observation) -> Option<Target<'a>> {
        enum Node<'a> {
            Instance(&'a Observation),
            Sub(&'a Json),
            Leaf(Target<'a>),
        }
        let mut node = Node::Instance(obs);
        for sub in &self.sub_attrs {
            node = match (node, core_member(sub)) {
                (Node::Instance(o), Some("observedAt")) if o.observed => {
                    Node::Leaf(Target::Time(o.observed_at))
                }
                (Node::Instance(o), Some("unitCode")) => {
                    Node::Leaf(Target::Str(o.unit.as_ref()?.as_str()))
                }
                (Node::Instance(o), Some("datasetId")) => {
                    Node::Leaf(Target::Str(o.dataset_id.as_deref()?))
                }
                (Node::Instance(o), None) => Node::Sub(o.meta.as_ref()?.get(sub.as_str())?),
                (Node::Sub(j), Some(member)) => Node::Leaf(Target::of(j.get(member)?)),
                (Node::Sub(j), None) => Node::Sub(j.get(sub.as_str())?),
                // createdAt/modifiedAt of an instance (not tracked), or past a leaf.
                _ => return None,
            };
        }
        let value = match node {
            Node::Instance(o) => match &o.value {
                Value::Number(n) => Target::Num(*n),
                Value::Bool(b) => Target::Bool(*b),
                Value::Text(s) => Target::Str(s),
                Value::Relationship(id) => Target::Str(id.as_str()),
                Value::Geo(j)
                | Value::Json(j)
                | Value::LanguageMap(j)
                | Value::Vocab(j)
                | Value::JsonValue(j)
                | Value::List(j)
                | Value::ListRelationship(j) => Target::of(j),
            },
            Node::Sub(j) => Target::of(j.get("value").or_else(|| j.get("object"))?),
            Node::Leaf(t) => t,
        };
        if self.value_path.is_empty() {
            return Some(value);
        }
        let Target::Json(mut j) = value else {
            return None;
        };
        for member in &self.value_path {
            j = match j {
                Json::Object(m) => m.get(member.as_str())?,
                Json::Array(a) => a.get(member.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(Target::of(j))
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for s in &self.sub_attrs {
            write!(f, ".{s}")?;
        }
        for m in &self.value_path {
            write!(f, "[{m}]")?;
        }
        Ok(())
    }
}

/// One term: an attribute path, and a condition on what it addresses (none: the path
/// exists).
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// What the term addresses.
    pub path: AttrPath,
    /// The condition; `None` tests that the path exists.
    pub condition: Option<Condition>,
}

impl Term {
    /// Whether any instance of the attribute in `entity` satisfies the term.
    pub fn matches(&self, entity: &EntityState) -> bool {
        entity
            .attrs
            .iter()
            .filter(|o| *o.attr == *self.path.name)
            .filter_map(|o| self.path.resolve(o))
            .any(|t| self.condition.as_ref().is_none_or(|c| c.holds(&t)))
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        match &self.condition {
            Some(c) => write!(f, "{c}"),
            None => Ok(()),
        }
    }
}

/// An operator and its value.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `==`: equal to the value, any value of a list, or within a range.
    Equal(Operand),
    /// `!=`: not [`Condition::Equal`].
    NotEqual(Operand),
    /// `>`.
    Greater(Literal),
    /// `>=`.
    GreaterOrEqual(Literal),
    /// `<`.
    Less(Literal),
    /// `<=`.
    LessOrEqual(Literal),
    /// `~=`: a string that the pattern matches.
    Matches(Pattern),
    /// `!~=`: a string that the pattern does not match.
    NotMatches(Pattern),
}

impl Condition {
    fn holds(&self, t: &Target<'_>) -> bool {
        let ord = |l: &Literal| compare(t, l);
        match self {
            Condition::Equal(o) => equal(t, o),
            Condition::NotEqual(o) => !equal(t, o),
            Condition::Greater(l) => ord(l) == Some(Ordering::Greater),
            Condition::GreaterOrEqual(l) => ord(l).is_some_and(Ordering::is_ge),
            Condition::Less(l) => ord(l) == Some(Ordering::Less),
            Condition::LessOrEqual(l) => ord(l).is_some_and(Ordering::is_le),
            Condition::Matches(p) => matches!(t, Target::Str(s) if p.is_match(s)),
            Condition::NotMatches(p) => matches!(t, Target::Str(s) if !p.is_match(s)),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Equal(o) => write!(f, "=={o}"),
            Condition::NotEqual(o) => write!(f, "!={o}"),
            Condition::Greater(l) => write!(f, ">{l}"),
            Condition::GreaterOrEqual(l) => write!(f, ">={l}"),
            Condition::Less(l) => write!(f, "<{l}"),
            Condition::LessOrEqual(l) => write!(f, "<={l}"),
            Condition::Matches(p) => write!(f, "~={p}"),
            Condition::NotMatches(p) => write!(f, "!~={p}"),
        }
    }
}

/// The value of `==` and `!=`.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// One value.
    One(Literal),
    /// `a,b,c`: any of (`==`), none of (`!=`). At least two values.
    AnyOf(Vec<Literal>),
    /// `min..max`, inclusive; both ends are numbers, strings, date-times, dates or times,
    /// of the same kind.
    Range(Literal, Literal),
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::One(l) => write!(f, "{l}"),
            Operand::AnyOf(ls) => {
                for (i, l) in ls.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{l}")?;
                }
                Ok(())
            }
            Operand::Range(a, b) => write!(f, "{a}..{b}"),
        }
    }
}

/// A value in a `q` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A number (finite).
    Number(f64),
    /// A quoted string, unescaped.
    Text(String),
    /// `true` or `false`.
    Bool(bool),
    /// A date-time, in UTC to the millisecond.
    DateTime(Timestamp),
    /// A date (`YYYY-MM-DD`).
    Date(NaiveDate),
    /// A time of day (`hh:mm:ss[.fff]Z`).
    Time(NaiveTime),
    /// An unquoted URI (e.g. a Relationship's target), compared as a string. It holds
    /// none of `, ; | ( ) "`, whitespace or `..` (quote such a value: strings compare the
    /// same way).
    Uri(String),
}

impl Literal {
    /// The kind of value a range end or an ordering operator takes, if this is one.
    fn ordered_kind(&self) -> Option<u8> {
        match self {
            Literal::Number(_) => Some(0),
            Literal::Text(_) => Some(1),
            Literal::DateTime(_) => Some(2),
            Literal::Date(_) => Some(3),
            Literal::Time(_) => Some(4),
            Literal::Bool(_) | Literal::Uri(_) => None,
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Number(x) => {
                let a = x.abs();
                // Plain decimals where they are short; Rust prints both forms as the
                // shortest text that parses back to the same f64.
                if a == 0.0 || (1e-5..1e16).contains(&a) {
                    write!(f, "{x}")
                } else {
                    write!(f, "{x:e}")
                }
            }
            Literal::Text(s) => write_quoted(f, s),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::DateTime(t) => write!(f, "{t}"),
            Literal::Date(d) => write!(f, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day()),
            Literal::Time(t) => {
                write!(f, "{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())?;
                let nanos = t.nanosecond();
                if nanos != 0 {
                    let frac = format!("{nanos:09}");
                    write!(f, ".{}", frac.trim_end_matches('0'))?;
                }
                f.write_str("Z")
            }
            Literal::Uri(u) => f.write_str(u),
        }
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// A compiled regular expression of `~=` / `!~=`. Two patterns are equal when their
/// source text is.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// Compiles `source` within [`MAX_PATTERN_SIZE`].
    pub fn new(source: &str) -> Result<Self, QueryError> {
        Pattern::compile(source, 0)
    }

    fn compile(source: &str, at: usize) -> Result<Self, QueryError> {
        RegexBuilder::new(source)
            .size_limit(MAX_PATTERN_SIZE)
            .dfa_size_limit(4 * MAX_PATTERN_SIZE)
            .nest_limit(MAX_DEPTH as u32)
            .build()
            .map(|regex| Pattern {
                source: source.to_owned(),
                regex,
            })
            .map_err(|e| QueryError::Pattern {
                at,
                pattern: clip(source),
                reason: match &e {
                    // The syntax message draws the pattern with a caret; keep its last line.
                    regex::Error::Syntax(s) => s
                        .lines()
                        .rev()
                        .find_map(|l| l.strip_prefix("error: "))
                        .unwrap_or(s)
                        .to_owned(),
                    regex::Error::CompiledTooBig(n) => {
                        format!("it compiles to more than {n} bytes; make it simpler")
                    }
                    other => other.to_string(),
                },
            })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.source).finish()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_quoted(f, &self.source)
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation

/// What a path addresses in one attribute instance.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Num(f64),
    Bool(bool),
    /// Strings: text values, Relationship objects, unit codes, datasetIds, and
    /// date-times held as text (in sub-attributes).
    Str(&'a str),
    Time(Timestamp),
    /// Arrays, objects and null.
    Json(&'a Json),
}

impl<'a> Target<'a> {
    fn of(j: &'a Json) -> Self {
        match j {
            Json::Number(n) => n.as_f64().map_or(Target::Json(j), Target::Num),
            Json::Bool(b) => Target::Bool(*b),
            Json::String(s) => Target::Str(s),
            _ => Target::Json(j),
        }
    }
}

/// How the target compares with `lit`; `None` when their types differ.
fn compare(t: &Target<'_>, lit: &Literal) -> Option<Ordering> {
    match (t, lit) {
        (Target::Num(a), Literal::Number(b)) => a.partial_cmp(b),
        (Target::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        (Target::Str(s), Literal::Text(b) | Literal::Uri(b)) => Some((*s).cmp(b.as_str())),
        (Target::Str(s), Literal::DateTime(b)) => Some(Timestamp::parse(s).ok()?.cmp(b)),
        (Target::Str(s), Literal::Date(b)) => Some(text_date(s)?.cmp(b)),
        (Target::Str(s), Literal::Time(b)) => Some(parse_time(s)?.cmp(b)),
        (Target::Time(a), Literal::DateTime(b)) => Some(a.cmp(b)),
        (Target::Time(a), Literal::Date(b)) => Some(utc_date(*a)?.cmp(b)),
        (Target::Time(a), Literal::Text(b)) => Some(a.cmp(&Timestamp::parse(b).ok()?)),
        _ => None,
    }
}

fn equal(t: &Target<'_>, o: &Operand) -> bool {
    let one = |t: &Target<'_>| match o {
        Operand::One(l) => compare(t, l) == Some(Ordering::Equal),
        Operand::AnyOf(ls) => ls.iter().any(|l| compare(t, l) == Some(Ordering::Equal)),
        Operand::Range(a, b) => {
            compare(t, a).is_some_and(Ordering::is_ge) && compare(t, b).is_some_and(Ordering::is_le)
        }
    };
    match t {
        // An array holds the value (§4.9).
        Target::Json(Json::Array(items)) => items.iter().any(|i| one(&Target::of(i))),
        t => one(t),
    }
}

fn utc_date(t: Timestamp) -> Option<NaiveDate> {
    DateTime::from_timestamp_millis(t.as_millis()).map(|d| d.date_naive())
}

/// A date, or the UTC day of a date-time, held as text.
fn text_date(s: &str) -> Option<NaiveDate> {
    parse_date(s).or_else(|| utc_date(Timestamp::parse(s).ok()?))
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, d| {
        d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
    })
}

/// `YYYY-MM-DD`.
fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(&b[0..4])?;
    NaiveDate::from_ymd_opt(y as i32, digits(&b[5..7])?, digits(&b[8..10])?)
}

/// `hh:mm:ss[.fraction][Z]`, fraction up to nanoseconds.
fn parse_time(s: &str) -> Option<NaiveTime> {
    let s = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    let (hms, frac) = match s.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (s, None),
    };
    let b = hms.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(&b[0..2])?, digits(&b[3..5])?, digits(&b[6..8])?);
    if sec > 59 {
        return None;
    }
    let nanos = match frac {
        None => 0,
        Some(f) if (1..=9).contains(&f.len()) => {
            digits(f.as_bytes())? * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return None,
    };
    NaiveTime::from_hms_nano_opt(h, m, sec, nanos)
}

// ---------------------------------------------------------------------------------------
// Parsing

fn clip(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        s.chars().take(MAX).chain("…".chars()).collect()
    }
}

/// Characters a name (or a `[…]` member) may hold; `.` separates them.
fn name_char(c: char) -> bool {
    !(c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '=' | '!' | '<' | '>' | '~' | ';' | '|' | '(' | ')' | '[' | ']' | '"' | ',' | '.'
        ))
}

/// The length of the first name in a dotted `word` (see the module docs for IRIs).
fn first_name_len(word: &str) -> usize {
    let first_dot = word.find('.').unwrap_or(word.len());
    let Some(colon) = word[..first_dot].find(':') else {
        return first_dot;
    };
    // A name that is itself an IRI (an expanded sub-attribute) starts the next name.
    let region = word[colon..]
        .match_indices('.')
        .map(|(i, _)| colon + i)
        .find(|&d| starts_iri(&word[d + 1..]))
        .unwrap_or(word.len());
    let start = word[..region]
        .rfind(['/', '#'])
        .map_or(colon + 1, |i| (i + 1).max(colon + 1));
    word[start..region].find('.').map_or(region, |i| start + i)
}

/// Whether `s` starts with `scheme://` or `urn:`.
fn starts_iri(s: &str) -> bool {
    let b = s.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_alphabetic) {
        return false;
    }
    let n = b
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-'))
        .count();
    b.get(n) == Some(&b':')
        && (b[n + 1..].starts_with(b"//") || b[..n].eq_ignore_ascii_case(b"urn"))
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    patterns: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, s: &str) -> bool {
        let ok = self.rest().starts_with(s);
        if ok {
            self.pos += s.len();
        }
        ok
    }

    /// A run of characters satisfying `keep`, from the current position.
    fn take_while(&mut self, keep: impl Fn(char, &str) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(i, c)| !keep(c, &rest[i..]))
            .map_or(rest.len(), |(i, _)| i);
        self.pos += len;
        &rest[..len]
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "the end".to_owned(),
            Some(c) => format!("`{}`", c.escape_debug()),
        }
    }

    fn syntax(&self, at: usize, message: impl Into<String>) -> QueryError {
        QueryError::Syntax {
            at,
            message: message.into(),
        }
    }

    fn query(mut self) -> Result<Query, QueryError> {
        let q = self.or(0)?;
        match self.peek() {
            None => Ok(q),
            Some(')') => Err(self.syntax(self.pos, "`)` has no `(` to close")),
            Some(_) => Err(self.syntax(
                self.pos,
                format!("expected `;`, `|` or the end, found {}", self.found()),
            )),
        }
    }

    fn or(&mut self, depth: usize) -> Result<Query, QueryError> {
        let mut items = vec![self.and(depth)?];
        while self.eat("|") {
            items.push(self.and(depth)?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Query::Or(items)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Query, QueryError> {
        let mut items = vec![self.primary(depth)?];
        while self.eat(";") {
            items.push(self.primary(depth)?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Query::And(items)
        })
    }

    /// A group or a term, and the whitespace after it.
    fn primary(&mut self, depth: usize) -> Result<Query, QueryError> {
        self.skip_ws();
        let open = self.pos;
        if !self.eat("(") {
            return Ok(Query::Term(self.term()?));
        }
        if depth >= MAX_DEPTH {
            return Err(QueryError::TooDeep {
                at: open,
                max: MAX_DEPTH,
            });
        }
        let q = self.or(depth + 1)?;
        if !self.eat(")") {
            return Err(self.syntax(
                self.pos,
                format!(
                    "expected `)` to close the `(` at byte {open}, found {}",
                    self.found()
                ),
            ));
        }
        self.skip_ws();
        Ok(q)
    }

    fn term(&mut self) -> Result<Term, QueryError> {
        let start = self.pos;
        let path = self.path()?;
        self.skip_ws();
        let op_at = self.pos;
        let condition = match self.operator() {
            Some(op) => {
                self.skip_ws();
                Some(self.condition(op, op_at)?)
            }
            None => None,
        };
        let end = self.pos;
        self.skip_ws();
        match self.peek() {
            None | Some(';' | '|' | ')') => Ok(Term { path, condition }),
            Some(c) => {
                let written = clip(self.src[start..end].trim_end());
                let message = if condition.is_some() {
                    format!(
                        "expected `;`, `|`, `)` or the end after `{written}`, found {}",
                        self.found()
                    )
                } else if c == '=' {
                    format!("`=` after `{written}` is not an operator; compare with `==`")
                } else {
                    format!(
                        "expected an operator (== != > >= < <= ~= !~=) or `;`/`|` after `{written}`, found {}",
                        self.found()
                    )
                };
                Err(self.syntax(self.pos, message))
            }
        }
    }

    fn path(&mut self) -> Result<AttrPath, QueryError> {
        let start = self.pos;
        let word = self.take_while(|c, _| c == '.' || name_char(c));
        if word.is_empty() {
            return Err(self.syntax(
                start,
                format!("expected an attribute name, found {}", self.found()),
            ));
        }
        let mut names = Vec::new();
        let mut at = 0;
        loop {
            let len = first_name_len(&word[at..]);
            if len == 0 {
                let what = if at == 0 {
                    "expected an attribute name before `.`"
                } else {
                    "expected a sub-attribute name after `.`"
                };
                return Err(self.syntax(start + at, what));
            }
            names.push(word[at..at + len].to_owned());
            at += len + 1;
            if at > word.len() {
                break;
            }
        }
        let mut path = AttrPath::new(names.remove(0));
        path.sub_attrs = names;
        while self.rest().starts_with('[') {
            let open = self.pos;
            self.pos += 1;
            let inner_at = self.pos;
            let inner = self.take_while(|c, _| c == '.' || name_char(c));
            if !self.eat("]") {
                return Err(self.syntax(
                    self.pos,
                    format!(
                        "expected a member name or `]` to close the `[` at byte {open}, found {}",
                        self.found()
                    ),
                ));
            }
            let mut at = inner_at;
            for member in inner.split('.') {
                if member.is_empty() {
                    return Err(self.syntax(at, "expected a member name inside `[…]`"));
                }
                path.value_path.push(member.to_owned());
                at += member.len() + 1;
            }
        }
        Ok(path)
    }

    fn operator(&mut self) -> Option<&'static str> {
        ["==", "!=", "!~=", "~=", ">=", ">", "<=", "<"]
            .into_iter()
            .find(|op| self.eat(op))
    }

    fn condition(&mut self, op: &'static str, op_at: usize) -> Result<Condition, QueryError> {
        if let "~=" | "!~=" = op {
            self.patterns += 1;
            if self.patterns > MAX_PATTERNS {
                return Err(QueryError::TooManyPatterns {
                    at: op_at,
                    max: MAX_PATTERNS,
                });
            }
            let at = self.pos;
            let source = if self.rest().starts_with('"') {
                self.quoted()?
            } else {
                let bare = self.take_while(|c, _| {
                    !(c.is_whitespace() || matches!(c, ';' | '|' | '(' | ')' | '"'))
                });
                if bare.is_empty() {
                    return Err(self.syntax(
                        at,
                        format!(
                            "expected a pattern after `{op}`, found {}; quote a pattern that holds ( ) | ; or spaces, as in {op}\"(?i)^ab\"",
                            self.found()
                        ),
                    ));
                }
                bare.to_owned()
            };
            let p = Pattern::compile(&source, at)?;
            return Ok(if op == "~=" {
                Condition::Matches(p)
            } else {
                Condition::NotMatches(p)
            });
        }
        let first_at = self.pos;
        let first = self.literal(op)?;
        self.skip_ws();
        if let "==" | "!=" = op {
            let operand = if self.eat("..") {
                self.skip_ws();
                let second_at = self.pos;
                let second = self.literal(op)?;
                if first.ordered_kind().is_none() {
                    return Err(self.syntax(
                        first_at,
                        "a range starts with a number, string, date-time, date or time",
                    ));
                }
                if second.ordered_kind() != first.ordered_kind() {
                    return Err(self.syntax(
                        second_at,
                        format!("a range ends with a value of the kind it starts with (`{first}`)"),
                    ));
                }
                Operand::Range(first, second)
            } else if self.rest().starts_with(',') {
                let mut all = vec![first];
                while self.eat(",") {
                    self.skip_ws();
                    all.push(self.literal(op)?);
                    self.skip_ws();
                }
                if self.rest().starts_with("..") {
                    return Err(self.syntax(self.pos, "a list cannot hold a range"));
                }
                Operand::AnyOf(all)
            } else {
                Operand::One(first)
            };
            return Ok(if op == "==" {
                Condition::Equal(operand)
            } else {
                Condition::NotEqual(operand)
            });
        }
        if first.ordered_kind().is_none() {
            return Err(self.syntax(
                first_at,
                format!(
                    "`{op}` compares with a number, string, date-time, date or time, not `{first}`"
                ),
            ));
        }
        if self.rest().starts_with(',') || self.rest().starts_with("..") {
            return Err(self.syntax(
                self.pos,
                format!(
                    "`{op}` takes one value; lists (a,b) and ranges (a..b) work with == and != only"
                ),
            ));
        }
        Ok(match op {
            ">" => Condition::Greater(first),
            ">=" => Condition::GreaterOrEqual(first),
            "<" => Condition::Less(first),
            _ => Condition::LessOrEqual(first),
        })
    }

    /// A quoted string, starting at the `"`.
    fn quoted(&mut self) -> Result<String, QueryError> {
        let open = self.pos;
        let mut out = String::new();
        let mut chars = self.src[open + 1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos = open + 1 + i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => out.push(e),
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(self.syntax(open, "the string has no closing `\"`"))
    }

    /// One value after `op`.
    fn literal(&mut self, op: &str) -> Result<Literal, QueryError> {
        let at = self.pos;
        if self.rest().starts_with('"') {
            return self.quoted().map(Literal::Text);
        }
        let tok = self.take_while(|c, rest| {
            !(c.is_whitespace()
                || c.is_control()
                || matches!(c, ';' | '|' | '(' | ')' | ',' | '"')
                || rest.starts_with(".."))
        });
        if tok.is_empty() {
            return Err(self.syntax(
                at,
                format!("expected a value after `{op}`, found {}", self.found()),
            ));
        }
        classify(tok).map_err(|m| self.syntax(at, m))
    }
}

fn is_number(tok: &str) -> bool {
    let b = tok.strip_prefix('-').unwrap_or(tok).as_bytes();
    let int = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if int == 0 {
        return false;
    }
    let mut i = int;
    if b.get(i) == Some(&b'.') {
        let frac = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if frac == 0 {
            return false;
        }
        i += 1 + frac;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == b.len()
}

/// An unquoted value.
fn classify(tok: &str) -> Result<Literal, String> {
    match tok {
        "true" => return Ok(Literal::Bool(true)),
        "false" => return Ok(Literal::Bool(false)),
        _ => {}
    }
    if is_number(tok) {
        return match tok.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Literal::Number(x)),
            _ => Err(format!("the number `{}` is out of range", clip(tok))),
        };
    }
    let b = tok.as_bytes();
    let dated = b.len() >= 10
        && b[4] == b'-'
        && b[7] == b'-'
        && [0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .all(|&i| b[i].is_ascii_digit());
    if dated && b.len() == 10 {
        return parse_date(tok)
            .map(Literal::Date)
            .ok_or_else(|| format!("`{tok}` is not a valid date"));
    }
    if dated && matches!(b[10], b'T' | b't') {
        return Timestamp::parse(tok)
            .map(Literal::DateTime)
            .map_err(|e| e.to_string());
    }
    if b.len() >= 3 && b[0].is_ascii_digit() && b[1].is_ascii_digit() && b[2] == b':' {
        return parse_time(tok)
            .map(Literal::Time)
            .ok_or_else(|| format!("`{}` is not a valid time such as 12:00:00Z", clip(tok)));
    }
    if is_absolute_uri(tok) {
        return Ok(Literal::Uri(tok.to_owned()));
    }
    Err(format!(
        "`{t}` is not a value: quote text (\"{t}\"), or write a number, true, false, a date-time such as 2018-12-04T12:00:00Z, or a URI",
        t = clip(tok)
    ))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::{
        PrivacyClass,
        ngsild::{ParseDefaults, parse_entity},
    };

    const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);

    fn dflt(t: &str) -> String {
        format!("https://uri.etsi.org/ngsi-ld/default-context/{t}")
    }

    /// An entity as a client would POST it (shaped after the Smart Data Models
    /// OffStreetParking and Vehicle examples), parsed as the API parses it.
    fn entity_from(body: Json) -> EntityState {
        let defaults = ParseDefaults {
            observed_at: T0,
            privacy: PrivacyClass::Public,
            received_at: Timestamp::from_millis(crate::time::MAX_MS),
        };
        let parsed = parse_entity(&body, Context::core(), &defaults).unwrap();
        let mut e = EntityState::new(parsed.id.clone(), parsed.entity_type.clone(), T0);
        for o in &parsed.observations {
            e.apply(o, T0);
        }
        e
    }

    fn entity() -> EntityState {
        entity_from(json!({
            "id": "urn:ngsi-ld:Vehicle:A4567",
            "type": "Vehicle",
            "brandName": {"type": "Property", "value": "Mercedes"},
            "temperature": {"type": "Property", "value": 21.5, "unitCode": "CEL",
                "observedAt": "2018-12-04T12:00:00Z",
                "accuracy": {"type": "Property", "value": 0.5},
                "providedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Device:7"}},
            "speed": [
                {"type": "Property", "value": 55, "datasetId": "urn:ngsi-ld:Dataset:gps"},
                {"type": "Property", "value": 54.5, "datasetId": "urn:ngsi-ld:Dataset:radar"}
            ],
            "isParked": {"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:Downtown1"},
            "inService": {"type": "Property", "value": true},
            "address": {"type": "Property", "value": {
                "addressLocality": "Bonn", "postalCode": "53113",
                "geo": {"floor": 2, "tags": ["covered", "ev"]}}},
            "colors": {"type": "Property", "value": ["red", "blue"]},
            "sizes": {"type": "Property", "value": [1, 5, 9]},
            "lastService": {"type": "Property", "value": "2018-11-30T08:30:00Z"},
            "serviceDay": {"type": "Property", "value": "2018-11-30"},
            "opensAt": {"type": "Property", "value": "08:30:00Z"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [7.1, 50.7]}}
        }))
    }

    fn q(text: &str) -> Query {
        let mut q = Query::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        q.expand(Context::core());
        q
    }

    #[track_caller]
    fn check(text: &str, want: bool) {
        assert_eq!(q(text).matches(&entity()), want, "{text}");
    }

    #[track_caller]
    fn fails(text: &str, at: usize, needle: &str) {
        let e = Query::parse(text).expect_err(text);
        let msg = e.to_string();
        assert!(msg.starts_with("q: "), "{msg}");
        assert!(msg.contains(needle), "{text}: `{msg}` lacks `{needle}`");
        assert_eq!(e.offset(), Some(at), "{text}: {msg}");
    }

    #[test]
    fn number_operators() {
        for (text, want) in [
            ("temperature==21.5", true),
            ("temperature==21", false),
            ("temperature!=21", true),
            ("temperature!=21.5", false),
            ("temperature>21", true),
            ("temperature>21.5", false),
            ("temperature>=21.5", true),
            ("temperature<22", true),
            ("temperature<21.5", false),
            ("temperature<=21.5", true),
            ("temperature<=2.15e1", true),
            ("temperature>-4", true),
        ] {
            check(text, want);
        }
    }

    #[test]
    fn strings_booleans_and_uris() {
        check(r#"brandName=="Mercedes""#, true);
        check(r#"brandName!="Mercedes""#, false);
        check(r#"brandName>"Audi""#, true);
        check(r#"brandName<"Audi""#, false);
        check("inService==true", true);
        check("inService==false", false);
        check("inService!=false", true);
        check("isParked==urn:ngsi-ld:OffStreetParking:Downtown1", true);
        check(
            r#"isParked=="urn:ngsi-ld:OffStreetParking:Downtown1""#,
            true,
        );
        check("isParked!=urn:ngsi-ld:OffStreetParking:Downtown1", false);
        check("isParked==urn:ngsi-ld:OffStreetParking:Uptown", false);
    }

    #[test]
    fn dates_and_times() {
        // observedAt is a date-time, compared in time order (offsets normalized).
        check("temperature.observedAt==2018-12-04T12:00:00Z", true);
        check("temperature.observedAt==2018-12-04T13:00:00+01:00", true);
        check("temperature.observedAt>2018-12-04T11:59:59.999Z", true);
        check("temperature.observedAt<2018-12-04T12:00:00Z", false);
        check("temperature.observedAt==2018-12-04", true);
        check("temperature.observedAt>2018-12-03", true);
        check(r#"temperature.observedAt=="2018-12-04T12:00:00Z""#, true);
        // Date-time text values compare in time order too.
        check("lastService<2018-12-01T00:00:00Z", true);
        check("lastService==2018-11-30T09:30:00+01:00", true);
        check("lastService==2018-11-30", true);
        check("serviceDay==2018-11-30", true);
        check("serviceDay<2018-12-01", true);
        check("opensAt==08:30:00Z", true);
        check("opensAt>08:00:00", true);
        check("opensAt<08:29:59.5Z", false);
        // A date-time against a non-date string is a type mismatch.
        check("brandName>2018-12-04T12:00:00Z", false);
    }

    #[test]
    fn ranges() {
        check("temperature==20..22", true);
        check("temperature==21.5..30", true);
        check("temperature==22..30", false);
        check("temperature!=22..30", true);
        check("temperature!=20..22", false);
        check(r#"brandName=="A".."N""#, true);
        check(
            "temperature.observedAt==2018-12-01T00:00:00Z..2018-12-31T00:00:00Z",
            true,
        );
        check("temperature.observedAt==2018-12-05..2018-12-31", false);
        check("opensAt==08:00:00Z..09:00:00Z", true);
        check("temperature == 20 .. 22", true);
    }

    #[test]
    fn lists() {
        check(r#"brandName=="Audi","Mercedes""#, true);
        check(r#"brandName=="Audi","BMW""#, false);
        check(r#"brandName!="Audi","BMW""#, true);
        check(r#"brandName!="Audi","Mercedes""#, false);
        check("temperature==1,21.5,3", true);
        check(
            "isParked==urn:ngsi-ld:X:1,urn:ngsi-ld:OffStreetParking:Downtown1",
            true,
        );
    }

    #[test]
    fn arrays_hold_values() {
        check(r#"colors=="red""#, true);
        check(r#"colors=="green""#, false);
        check(r#"colors!="green""#, true);
        check(r#"colors!="red""#, false);
        check(r#"colors=="green","blue""#, true);
        check("sizes==4..6", true);
        check("sizes==6..8", false);
        check("sizes[1]==5", true);
        check("sizes[3]", false);
        check(r#"address[geo][tags]=="ev""#, true);
    }

    #[test]
    fn patterns() {
        check(r#"brandName~="^Merc""#, true);
        check(r#"brandName~="(?i)^mercedes$""#, true);
        check("brandName~=^Merc", true);
        check("brandName~=cedes$", true);
        check("brandName~=^Audi", false);
        check(r#"brandName!~="^Audi""#, true);
        check(r#"brandName!~="^Merc""#, false);
        check(r#"isParked~="^urn:ngsi-ld:OffStreetParking:""#, true);
        // Patterns apply to strings only.
        check("temperature~=2", false);
        check("temperature!~=2", false);
        check(r#"address[postalCode]~="^53\d{3}$""#, true);
        check(r#"brandName~="(Audi|Merc)";inService"#, true);
    }

    #[test]
    fn sub_attributes_and_members() {
        check("temperature.unitCode==\"CEL\"", true);
        check("temperature.unitCode", true);
        check("brandName.unitCode", false);
        check("temperature.accuracy", true);
        check("temperature.accuracy<1", true);
        check("temperature.accuracy==0.5", true);
        check("temperature.providedBy==urn:ngsi-ld:Device:7", true);
        check("temperature.missing", false);
        check("temperature.accuracy.observedAt", false);
        check("temperature.createdAt", false);
        check("speed.datasetId==urn:ngsi-ld:Dataset:radar", true);
        check("address[addressLocality]==\"Bonn\"", true);
        check("address[addressLocality]", true);
        check("address[street]", false);
        check("address[geo][floor]==2", true);
        check("address[geo.floor]>=2", true);
        check("address[geo][floor][x]", false);
        check("brandName[x]", false);
        check("location[type]==\"Point\"", true);
        check("location[coordinates][0]<8", true);
    }

    #[test]
    fn multi_instance_attributes_match_any_instance() {
        check("speed==55", true);
        check("speed==54.5", true);
        check("speed>54.9", true);
        check("speed>55", false);
        check("speed!=55", true); // the radar instance differs
        check("speed==55;speed==54.5", true);
        check(
            "speed.datasetId==urn:ngsi-ld:Dataset:gps;speed.datasetId==urn:ngsi-ld:Dataset:radar",
            true,
        );
    }

    #[test]
    fn existence_and_missing_attributes() {
        check("brandName", true);
        check("color", false);
        // A missing attribute fails every operator, negations included.
        for op in ["==1", "!=1", ">1", "<1", "~=\"x\"", "!~=\"x\""] {
            check(&format!("color{op}"), false);
        }
    }

    #[test]
    fn wrong_type_is_unequal() {
        check("brandName==3", false);
        check("brandName>3", false);
        check("brandName<3", false);
        check("temperature==\"21.5\"", false);
        check("temperature>\"2\"", false);
        check("inService==1", false);
        check("address==\"Bonn\"", false);
        check("isParked==3", false);
        // Values of different types are unequal (§4.9), so `!=` holds.
        check("brandName!=3", true);
        check("temperature!=\"21.5\"", true);
    }

    #[test]
    fn precedence_and_parentheses() {
        let t = |s: &str| {
            Query::Term(Term {
                path: AttrPath::new(s),
                condition: None,
            })
        };
        assert_eq!(
            Query::parse("a;b|c").unwrap(),
            Query::Or(vec![Query::And(vec![t("a"), t("b")]), t("c")])
        );
        assert_eq!(
            Query::parse("a|b;c").unwrap(),
            Query::Or(vec![t("a"), Query::And(vec![t("b"), t("c")])])
        );
        assert_eq!(
            Query::parse("a;(b|c)").unwrap(),
            Query::And(vec![t("a"), Query::Or(vec![t("b"), t("c")])])
        );
        assert_eq!(Query::parse("((a))").unwrap(), t("a"));
        assert_eq!(
            Query::parse("a;b;c").unwrap(),
            Query::And(vec![t("a"), t("b"), t("c")])
        );
        // brandName true, color false, inService true.
        check("color;brandName|inService", true);
        check("color;(brandName|inService)", false);
        check("brandName|color;inService", true);
        check("(brandName|color);color", false);
        check("brandName;inService;color", false);
        check("color|color|inService", true);
        check(" ( brandName ; inService ) | color ", true);
    }

    #[test]
    fn canonical_form() {
        for (text, canonical) in [
            ("a;b|c", "a;b|c"),
            ("(a;b)|c", "a;b|c"),
            ("a;(b|c)", "a;(b|c)"),
            ("(a;b);c", "(a;b);c"),
            ("(a|b)|c", "(a|b)|c"),
            ("( x == 1 )", "x==1"),
            ("x==1.50", "x==1.5"),
            ("x==1e21", "x==1e21"),
            ("x==-0.000001", "x==-1e-6"),
            ("x==12345678", "x==12345678"),
            ("t>2018-12-04T13:00:00+01:00", "t>2018-12-04T12:00:00Z"),
            ("t==2018-12-04", "t==2018-12-04"),
            ("t==08:30:00.250", "t==08:30:00.25Z"),
            (r#"s=="a\"b\\c\d""#, r#"s=="a\"b\\c\\d""#),
            ("s~=^a.b", r#"s~="^a.b""#),
            ("a.b.c[d.e][f]", "a.b.c[d][e][f]"),
            ("r==urn:a:b,\"x\",true", "r==urn:a:b,\"x\",true"),
        ] {
            let parsed = Query::parse(text).unwrap();
            assert_eq!(parsed.to_string(), canonical, "{text}");
            assert_eq!(Query::parse(canonical).unwrap(), parsed, "{text}");
        }
    }

    #[test]
    fn iri_names() {
        let p = Query::parse(
            "https://uri.etsi.org/ngsi-ld/default-context/temperature.observedAt>2018-01-01",
        )
        .unwrap();
        let path = p.paths().next().unwrap();
        assert_eq!(path.name, dflt("temperature"));
        assert_eq!(path.sub_attrs, ["observedAt"]);

        // Expanded sub-attributes too: this is what a stored subscription holds.
        let mut e = q("temperature.accuracy<1;address[geo][floor]==2");
        assert_eq!(
            e.to_string(),
            format!(
                "{}.{}<1;{}[geo][floor]==2",
                dflt("temperature"),
                dflt("accuracy"),
                dflt("address")
            )
        );
        assert_eq!(Query::parse(&e.to_string()).unwrap(), e);
        assert!(e.matches(&entity()));

        for (text, name, subs) in [
            ("ex:speed.unitCode", "ex:speed", vec!["unitCode"]),
            ("urn:a:b.c", "urn:a:b", vec!["c"]),
            (
                "https://a.org/x.urn:y:z",
                "https://a.org/x",
                vec!["urn:y:z"],
            ),
            ("https://a.org/p#x.y", "https://a.org/p#x", vec!["y"]),
            (
                "https://a.org/x.https://b.org/p.q/y.urn:z:1",
                "https://a.org/x",
                vec!["https://b.org/p.q/y", "urn:z:1"],
            ),
            (
                "https://uri.etsi.org/ngsi-ld/default-context/1https://a.org/",
                "https://uri.etsi.org/ngsi-ld/default-context/1https://a.org/",
                vec![],
            ),
            (
                "https://smartdatamodels.org/dataModel.Environment/NO2",
                "https://smartdatamodels.org/dataModel.Environment/NO2",
                vec![],
            ),
        ] {
            let p = Query::parse(text).unwrap();
            let path = p.paths().next().unwrap();
            assert_eq!(
                (path.name.as_str(), &path.sub_attrs),
                (
                    name,
                    &subs.iter().map(|s| s.to_string()).collect::<Vec<_>>()
                ),
                "{text}"
            );
        }

        // Short names and full IRIs address the same attribute.
        check(&format!("{}==21.5", dflt("temperature")), true);
        e.map_names(|n| n.to_uppercase());
        assert!(e.paths().all(|p| p.name.starts_with("HTTPS://")));
    }

    #[test]
    fn map_names_skips_core_members_and_values() {
        let mut p = Query::parse(
            "a.observedAt;b.unitCode|c.sub[x.y];(d.datasetId|e.createdAt;f.modifiedAt)",
        )
        .unwrap();
        let mut seen = Vec::new();
        p.map_names(|n| {
            seen.push(n.to_owned());
            format!("ex:{n}")
        });
        assert_eq!(seen, ["a", "b", "c", "sub", "d", "e", "f"]);
        assert_eq!(
            p.to_string(),
            "ex:a.observedAt;ex:b.unitCode|ex:c.ex:sub[x][y];(ex:d.datasetId|ex:e.createdAt;ex:f.modifiedAt)"
        );
        assert_eq!(Query::parse(&p.to_string()).unwrap(), p);
    }

    #[test]
    fn errors_say_where_and_what() {
        fails("", 0, "expected an attribute name, found the end");
        fails(
            "temperature]",
            11,
            "expected an operator (== != > >= < <= ~= !~=) or `;`/`|` after `temperature`, found `]`",
        );
        fails(
            "temperature=21",
            11,
            "`=` after `temperature` is not an operator; compare with `==`",
        );
        fails(
            "temperature==",
            13,
            "expected a value after `==`, found the end",
        );
        fails("a==1;", 5, "expected an attribute name, found the end");
        fails(
            "a==1 b",
            5,
            "expected `;`, `|`, `)` or the end after `a==1`, found `b`",
        );
        fails("a==free", 3, "`free` is not a value: quote text (\"free\")");
        fails("a==\"free", 3, "has no closing `\"`");
        fails(
            "(a==1",
            5,
            "expected `)` to close the `(` at byte 0, found the end",
        );
        fails("a==1)", 4, "`)` has no `(` to close");
        fails("()", 1, "expected an attribute name, found `)`");
        fails("a..b", 2, "expected a sub-attribute name after `.`");
        fails(".a", 0, "expected an attribute name before `.`");
        fails("a.", 2, "expected a sub-attribute name after `.`");
        fails(
            "a[b",
            3,
            "expected a member name or `]` to close the `[` at byte 1",
        );
        fails("a[]", 2, "expected a member name inside `[…]`");
        fails("a[b..c]", 4, "expected a member name inside `[…]`");
        fails(
            "a>true",
            2,
            "`>` compares with a number, string, date-time, date or time, not `true`",
        );
        fails("a>1,2", 3, "`>` takes one value");
        fails("a<1..2", 3, "`<` takes one value");
        fails(
            "a==1..\"b\"",
            6,
            "a range ends with a value of the kind it starts with (`1`)",
        );
        fails("a==true..false", 3, "a range starts with a number");
        fails("a==1,2..3", 6, "a list cannot hold a range");
        fails("a==2018-02-30", 3, "`2018-02-30` is not a valid date");
        fails("a==2018-12-04T25:00:00Z", 3, "not an RFC 3339 date-time");
        fails("a==25:00:00", 3, "is not a valid time");
        fails("a==1e999", 3, "the number `1e999` is out of range");
        fails(
            "a~=(x",
            3,
            "expected a pattern after `~=`, found `(`; quote a pattern",
        );
        fails(
            "a~=\"(x\"",
            3,
            "the pattern \"(x\" at byte 3 is not usable: unclosed group",
        );
        fails("a;b~=\"[z-a]\"", 5, "the pattern \"[z-a]\"");
        fails("x==1;a!~=\"\\\"", 9, "has no closing");
    }

    #[test]
    fn limits() {
        let long = format!("a=={}", "1".repeat(MAX_LEN));
        assert_eq!(
            Query::parse(&long).unwrap_err(),
            QueryError::TooLong {
                len: MAX_LEN + 3,
                max: MAX_LEN
            }
        );
        let nest = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        assert!(Query::parse(&nest(MAX_DEPTH)).is_ok());
        let e = Query::parse(&nest(MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(
            e,
            QueryError::TooDeep {
                at: MAX_DEPTH,
                max: MAX_DEPTH
            }
        );
        assert!(e.to_string().contains("nest deeper than 32"), "{e}");
        // Unbalanced and deep: still an error, not a stack overflow.
        assert!(matches!(
            Query::parse(&"(".repeat(MAX_LEN)),
            Err(QueryError::TooDeep { .. })
        ));
        let many = vec!["a~=x"; MAX_PATTERNS + 1].join(";");
        assert_eq!(
            Query::parse(&many).unwrap_err(),
            QueryError::TooManyPatterns {
                at: 5 * MAX_PATTERNS + 1,
                max: MAX_PATTERNS
            }
        );
        assert!(Query::parse(&vec!["a~=x"; MAX_PATTERNS].join(";")).is_ok());
        // A pattern that compiles too large.
        let e = Query::parse(r#"a~="\w{500}\w{500}""#).unwrap_err();
        assert!(e.to_string().contains("make it simpler"), "{e}");
        assert!(Pattern::new("\\w{1000}").is_err());
        assert!(Pattern::new("^a+$").unwrap().is_match("aaa"));
    }

    #[test]
    fn whitespace_unicode_and_escapes() {
        let p = Query::parse("  straße == \"Köln \\\"Süd\\\"\" ;  ä ").unwrap();
        assert_eq!(p.to_string(), "straße==\"Köln \\\"Süd\\\"\";ä");
        fails("a==1\u{0}", 4, "expected `;`, `|`, `)` or the end");
        // Multi-byte characters: offsets are bytes.
        fails("ä,", 2, "after `ä`, found `,`");
    }

    // ---- properties

    fn num() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |x| x.is_finite()),
            (-1000i32..1000).prop_map(f64::from),
        ]
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z_][a-zA-Z0-9_-]{0,8}",
            "[a-zé]{1,3}:[a-z0-9]{1,5}",
            "https://example\\.org/[a-z.]{0,6}/[a-zA-Z]{1,6}",
            "urn:ngsi-ld:[a-z]{1,4}",
        ]
    }

    /// Values of each kind that ranges and ordering operators take.
    fn ordered_kinds() -> [BoxedStrategy<Literal>; 5] {
        [
            prop_oneof![
                num(),
                (-1_000_000i64..1_000_000).prop_map(|n| n as f64 / 100.0)
            ]
            .prop_map(Literal::Number)
            .boxed(),
            prop_oneof!["\\PC{0,12}", "[\"\\\\a-z]{0,6}"]
                .prop_map(Literal::Text)
                .boxed(),
            (crate::time::MIN_MS..=crate::time::MAX_MS)
                .prop_map(|ms| Literal::DateTime(Timestamp::from_millis(ms)))
                .boxed(),
            (0i32..=9999, 1u32..=365)
                .prop_map(|(y, d)| Literal::Date(NaiveDate::from_yo_opt(y, d).unwrap()))
                .boxed(),
            (0u32..86_400, prop_oneof![Just(0u32), 0u32..1_000_000_000])
                .prop_map(|(s, n)| {
                    Literal::Time(NaiveTime::from_num_seconds_from_midnight_opt(s, n).unwrap())
                })
                .boxed(),
        ]
    }

    fn ordered_literal() -> BoxedStrategy<Literal> {
        proptest::strategy::Union::new(ordered_kinds()).boxed()
    }

    fn literal() -> BoxedStrategy<Literal> {
        prop_oneof![
            5 => ordered_literal(),
            1 => any::<bool>().prop_map(Literal::Bool),
            1 => "(urn:ngsi-ld:[A-Z][a-z]{1,5}:[a-z0-9-]{1,6}|https://example\\.org/[a-z]{1,6}\\?q=[a-z]{1,3})"
                .prop_map(Literal::Uri),
        ]
        .boxed()
    }

    /// Two ends of a range, of the same kind.
    fn ordered() -> impl Strategy<Value = (Literal, Literal)> {
        proptest::strategy::Union::new(ordered_kinds().map(|k| (k.clone(), k)))
    }

    fn condition() -> impl Strategy<Value = Condition> {
        let operand = prop_oneof![
            literal().prop_map(Operand::One),
            proptest::collection::vec(literal(), 2..4).prop_map(Operand::AnyOf),
            ordered().prop_map(|(a, b)| Operand::Range(a, b)),
        ]
        .boxed();
        let one = ordered_literal();
        let pattern = prop_oneof![
            Just("^a+$".to_owned()),
            Just("(?i)x|y".to_owned()),
            "\\PC{0,8}".prop_map(|s| regex::escape(&s)),
        ]
        .prop_map(|s| Pattern::new(&s).unwrap())
        .boxed();
        prop_oneof![
            operand.clone().prop_map(Condition::Equal),
            operand.prop_map(Condition::NotEqual),
            one.clone().prop_map(Condition::Greater),
            one.clone().prop_map(Condition::GreaterOrEqual),
            one.clone().prop_map(Condition::Less),
            one.prop_map(Condition::LessOrEqual),
            pattern.clone().prop_map(Condition::Matches),
            pattern.prop_map(Condition::NotMatches),
        ]
    }

    fn term() -> impl Strategy<Value = Term> {
        let sub = prop_oneof![
            name(),
            Just("observedAt".to_owned()),
            Just("unitCode".to_owned())
        ];
        (
            name(),
            proptest::collection::vec(sub, 0..3),
            proptest::collection::vec("[a-z0-9_]{1,5}", 0..3),
            proptest::option::of(condition()),
        )
            .prop_map(|(name, sub_attrs, value_path, condition)| Term {
                path: AttrPath {
                    name,
                    sub_attrs,
                    value_path,
                },
                condition,
            })
    }

    fn query() -> impl Strategy<Value = Query> {
        term()
            .prop_map(Query::Term)
            .prop_recursive(4, 24, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 2..4).prop_map(Query::And),
                    proptest::collection::vec(inner, 2..4).prop_map(Query::Or),
                ]
            })
    }

    /// Whether an expanded query can be written out: a sub-attribute after an IRI is an
    /// IRI itself or holds no `/` or `#` (the module docs' rule). Expansion leaves only
    /// core members and `@` keywords unexpanded.
    fn writable_expanded(q: &Query) -> bool {
        q.paths().all(|p| {
            p.sub_attrs
                .iter()
                .all(|s| starts_iri(s) || !s.contains(['/', '#']))
        })
    }

    /// Text built from the grammar's pieces, to reach deeper than random characters.
    fn token_soup() -> impl Strategy<Value = String> {
        let piece = proptest::sample::select(vec![
            "a",
            "temperature",
            "speed",
            "brandName",
            "address",
            ".",
            "[",
            "]",
            "(",
            ")",
            ";",
            "|",
            "==",
            "!=",
            ">",
            ">=",
            "<",
            "<=",
            "~=",
            "!~=",
            "=",
            "!",
            "~",
            ",",
            "..",
            " ",
            "1",
            "-2.5e3",
            "true",
            "2018-12-04",
            "T12:00:00Z",
            "12:00:00",
            "urn:x:y",
            "https://a.org/",
            "observedAt",
            "(?i)",
            "ä",
            "9e999",
            "\"",
            "\\",
            "\u{0}",
        ]);
        proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn display_parses_back_to_the_same_tree(tree in query()) {
            let text = tree.to_string();
            prop_assume!(text.len() <= MAX_LEN);
            let back = Query::parse(&text);
            prop_assert_eq!(back.as_ref(), Ok(&tree), "{}", text);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            if let Ok(mut p) = Query::parse(&text) {
                prop_assert_eq!(Query::parse(&p.to_string()), Ok(p.clone()));
                p.expand(Context::core());
                if writable_expanded(&p) {
                    prop_assert_eq!(Query::parse(&p.to_string()), Ok(p.clone()));
                }
                let _ = p.matches(&entity());
            }
        }

        #[test]
        fn grammar_pieces_never_panic(text in token_soup()) {
            match Query::parse(&text) {
                Ok(mut p) => {
                    prop_assert_eq!(Query::parse(&p.to_string()), Ok(p.clone()), "{}", text);
                    p.expand(Context::core());
                    // The expanded form (what a subscription stores) parses back too.
                    if writable_expanded(&p) {
                        prop_assert_eq!(Query::parse(&p.to_string()), Ok(p.clone()), "{}", text);
                    }
                    let _ = p.matches(&entity());
                }
                Err(e) => {
                    let at = e.offset().unwrap_or(0);
                    prop_assert!(at <= text.len(), "{}: {}", text, e);
                    prop_assert!(text.is_char_boundary(at), "{}: {}", text, e);
                }
            }
        }

        #[test]
        fn numbers_compare_as_f64(n in num(), other in num(), k in num(), same in any::<bool>()) {
            let m = if same { n } else { other };
            let e = entity_from(json!({"id": "urn:ngsi-ld:T:1", "type": "T", "x": {"type": "Property", "value": n}}));
            for (op, want) in [("==", n == m), ("!=", n != m), (">", n > m), (">=", n >= m), ("<", n < m), ("<=", n <= m)] {
                let text = format!("x{op}{}", Literal::Number(m));
                prop_assert_eq!(q(&text).matches(&e), want, "{} against {}", text, n);
            }
            let (lo, hi) = (m.min(k), m.max(k));
            let text = format!("x=={}..{}", Literal::Number(lo), Literal::Number(hi));
            prop_assert_eq!(q(&text).matches(&e), lo <= n && n <= hi, "{} against {}", text, n);
        }

        #[test]
        fn strings_compare_as_text(s in "\\PC{0,6}", other in "\\PC{0,6}", same in any::<bool>()) {
            let t = if same { s.clone() } else { other };
            let e = entity_from(json!({"id": "urn:ngsi-ld:T:1", "type": "T", "x": {"type": "Property", "value": s}}));
            let lit = Literal::Text(t.clone());
            for (op, want) in [("==", s == t), ("!=", s != t), (">", s > t), ("<=", s <= t)] {
                let text = format!("x{op}{lit}");
                prop_assert_eq!(q(&text).matches(&e), want, "{} against {:?}", text, s);
            }
            let text = format!("x~={}", Literal::Text(format!("^{}$", regex::escape(&t))));
            prop_assert_eq!(q(&text).matches(&e), s == t, "{}", text);
        }
    }

    #[test]
    fn entity_fixture_is_what_the_tests_assume() {
        let e = entity();
        assert_eq!(
            e.attrs.iter().filter(|o| *o.attr == dflt("speed")).count(),
            2
        );
        assert!(matches!(
            e.attr(&dflt("isParked")).map(|o| &o.value),
            Some(Value::Relationship(_))
        ));
        assert!(e.attr(&dflt("temperature")).unwrap().meta.is_some());
    }
}
