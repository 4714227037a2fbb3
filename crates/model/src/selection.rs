//! The small languages that select entities besides `q` and geo-queries: entity type
//! expressions (GS CIM 009 4.17, `type=(Building;Asset),Parking`) and scope queries
//! (4.19, `scopeQ=/Madrid/+/ParqueNorte`).
//!
//! Both parse into a tree and evaluate against an [`EntityState`]. Type names are
//! expanded by the caller (the parser takes a function), so this module knows nothing
//! of `@context`s.

use std::sync::Arc;

use crate::entity::EntityState;

/// Why an expression cannot be used, in words for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectionError(pub String);

fn err(msg: impl Into<String>) -> SelectionError {
    SelectionError(msg.into())
}

/// Longest expression accepted, bytes.
pub const MAX_LEN: usize = 4096;
/// Deepest parenthesis nesting accepted.
pub const MAX_DEPTH: usize = 32;

/// An entity type expression: `,` and `|` are or, `;` is and, parentheses group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeExpr {
    /// The entity has this type (an expanded IRI).
    Type(Arc<str>),
    /// Every part holds.
    And(Vec<TypeExpr>),
    /// Some part holds.
    Or(Vec<TypeExpr>),
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    text: &'a str,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
}

impl TypeExpr {
    /// Parses a type expression, expanding each type name with `expand`.
    pub fn parse(text: &str, expand: &dyn Fn(&str) -> String) -> Result<TypeExpr, SelectionError> {
        if text.len() > MAX_LEN {
            return Err(err(format!(
                "the type expression is longer than {MAX_LEN} bytes"
            )));
        }
        if text.trim().is_empty() {
            return Err(err("the type expression is empty; name at least one type"));
        }
        let mut p = Parser {
            s: text.as_bytes(),
            pos: 0,
            text,
        };
        let e = Self::or(&mut p, expand, 0)?;
        if !p.at_end() {
            return Err(err(format!(
                "unexpected `{}` at byte {} of the type expression",
                p.text[p.pos..].chars().next().unwrap_or(' '),
                p.pos
            )));
        }
        Ok(e)
    }

    fn or(
        p: &mut Parser<'_>,
        expand: &dyn Fn(&str) -> String,
        depth: usize,
    ) -> Result<TypeExpr, SelectionError> {
        let mut parts = vec![Self::and(p, expand, depth)?];
        while matches!(p.peek(), Some(b',' | b'|')) {
            p.pos += 1;
            parts.push(Self::and(p, expand, depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            TypeExpr::Or(parts)
        })
    }

    fn and(
        p: &mut Parser<'_>,
        expand: &dyn Fn(&str) -> String,
        depth: usize,
    ) -> Result<TypeExpr, SelectionError> {
        let mut parts = vec![Self::factor(p, expand, depth)?];
        while p.peek() == Some(b';') {
            p.pos += 1;
            parts.push(Self::factor(p, expand, depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            TypeExpr::And(parts)
        })
    }

    fn factor(
        p: &mut Parser<'_>,
        expand: &dyn Fn(&str) -> String,
        depth: usize,
    ) -> Result<TypeExpr, SelectionError> {
        if p.peek() == Some(b'(') {
            if depth >= MAX_DEPTH {
                return Err(err(format!(
                    "type expressions nest at most {MAX_DEPTH} parentheses deep"
                )));
            }
            p.pos += 1;
            let e = Self::or(p, expand, depth + 1)?;
            if p.peek() != Some(b')') {
                return Err(err(format!("a `(` is not closed at byte {}", p.pos)));
            }
            p.pos += 1;
            return Ok(e);
        }
        let start = p.pos;
        while let Some(c) = p.peek() {
            if matches!(c, b',' | b'|' | b';' | b'(' | b')') {
                break;
            }
            p.pos += 1;
        }
        let name = p.text[start..p.pos].trim();
        if name.is_empty() {
            return Err(err(format!(
                "a type name is missing at byte {start} of the type expression"
            )));
        }
        if name.contains(char::is_whitespace) {
            return Err(err(format!("type name `{name}` contains whitespace")));
        }
        Ok(TypeExpr::Type(Arc::from(expand(name).as_str())))
    }

    /// Whether `e`'s types satisfy the expression.
    pub fn matches(&self, e: &EntityState) -> bool {
        match self {
            TypeExpr::Type(t) => e.has_type(t),
            TypeExpr::And(parts) => parts.iter().all(|p| p.matches(e)),
            TypeExpr::Or(parts) => parts.iter().any(|p| p.matches(e)),
        }
    }

    /// Every type the expression names, for index lookups.
    pub fn names(&self) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out.sort();
        out.dedup();
        out
    }

    fn collect(&self, out: &mut Vec<Arc<str>>) {
        match self {
            TypeExpr::Type(t) => out.push(t.clone()),
            TypeExpr::And(p) | TypeExpr::Or(p) => p.iter().for_each(|p| p.collect(out)),
        }
    }

    /// The types, when the expression is a plain list of alternatives (no `;`): then an
    /// entity matches when it has any of them, which an index answers directly.
    pub fn alternatives(&self) -> Option<Vec<Arc<str>>> {
        match self {
            TypeExpr::Type(t) => Some(vec![t.clone()]),
            TypeExpr::Or(parts) => parts
                .iter()
                .map(|p| match p {
                    TypeExpr::Type(t) => Some(t.clone()),
                    _ => None,
                })
                .collect(),
            TypeExpr::And(_) => None,
        }
    }
}

/// A scope query: `,` and `|` are or, `;` is and, each operand a scope pattern where
/// `+` matches one level and a final `#` any number of levels (`/#`: any scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeQuery {
    /// Alternatives, each a conjunction of patterns (split into levels).
    any_of: Vec<Vec<Vec<String>>>,
}

impl ScopeQuery {
    /// Parses a `scopeQ` value.
    pub fn parse(text: &str) -> Result<ScopeQuery, SelectionError> {
        if text.len() > MAX_LEN {
            return Err(err(format!("scopeQ is longer than {MAX_LEN} bytes")));
        }
        let mut any_of = Vec::new();
        for alt in text.split([',', '|']) {
            let mut all = Vec::new();
            for pattern in alt.split(';') {
                let pattern = pattern.trim().trim_matches(|c| c == '(' || c == ')');
                let Some(rest) = pattern.strip_prefix('/') else {
                    return Err(err(format!(
                        "scope pattern `{pattern}` must start with /, e.g. /Madrid/+/Parks or /Madrid/#"
                    )));
                };
                let levels: Vec<String> = if rest == "#" {
                    vec!["#".to_owned()]
                } else {
                    rest.split('/').map(str::to_owned).collect()
                };
                if levels.iter().any(String::is_empty) {
                    return Err(err(format!("scope pattern `{pattern}` has an empty level")));
                }
                if let Some(i) = levels.iter().position(|l| l == "#")
                    && i + 1 != levels.len()
                {
                    return Err(err(format!("`#` must be the last level of `{pattern}`")));
                }
                all.push(levels);
            }
            any_of.push(all);
        }
        Ok(ScopeQuery { any_of })
    }

    fn pattern_matches(pattern: &[String], scope: &str) -> bool {
        let levels: Vec<&str> = scope.trim_start_matches('/').split('/').collect();
        let mut i = 0;
        for p in pattern {
            match p.as_str() {
                "#" => return true,
                "+" => {
                    if i >= levels.len() {
                        return false;
                    }
                }
                lit => {
                    if levels.get(i) != Some(&lit) {
                        return false;
                    }
                }
            }
            i += 1;
        }
        i == levels.len()
    }

    /// Whether one of `e`'s scopes satisfies the query.
    pub fn matches(&self, e: &EntityState) -> bool {
        self.any_of.iter().any(|all| {
            all.iter()
                .all(|pattern| e.scope.iter().any(|s| Self::pattern_matches(pattern, s)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EntityId, Timestamp};

    fn entity(types: &[&str], scope: &[&str]) -> EntityState {
        let mut e = EntityState::new(
            EntityId::new("urn:x:1").unwrap(),
            Arc::from(types[0]),
            Timestamp::from_millis(0),
        );
        let more: Vec<Arc<str>> = types[1..].iter().map(|t| Arc::from(*t)).collect();
        e.add_types(&more);
        e.scope = scope.iter().map(|s| Arc::from(*s)).collect();
        e
    }

    fn t(s: &str) -> TypeExpr {
        TypeExpr::parse(s, &|n| n.to_owned()).unwrap()
    }

    #[test]
    fn type_expressions_combine_and_or_and_parentheses() {
        let building = entity(&["Building", "TouristDestination"], &[]);
        let parking = entity(&["Parking"], &[]);
        assert!(t("Building").matches(&building));
        assert!(t("(Building;TouristDestination)").matches(&building));
        assert!(!t("Building;Parking").matches(&building));
        assert!(t("(Building;Parking),TouristDestination").matches(&building));
        assert!(t("(Building;Parking)|Parking").matches(&parking));
        assert_eq!(t("A,B|C").alternatives().map(|v| v.len()), Some(3));
        assert_eq!(t("A;B").alternatives(), None);
        assert_eq!(t("(A;B),C").names().len(), 3);
        for bad in ["", "(A", "A,,B", "A)", "A B"] {
            assert!(TypeExpr::parse(bad, &|n| n.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn scope_queries_use_plus_and_hash() {
        let e = entity(
            &["T"],
            &["/Madrid/Gardens/ParqueNorte", "/CompanyA/OrgB/UnitC"],
        );
        let yes = |s: &str| ScopeQuery::parse(s).unwrap().matches(&e);
        assert!(yes("/Madrid/Gardens/ParqueNorte"));
        assert!(yes("/Madrid/+/ParqueNorte"));
        assert!(!yes("/Madrid/+"));
        assert!(yes("/CompanyA/#"));
        assert!(yes("/#"));
        assert!(yes("/Madrid/#;/CompanyA/#"));
        assert!(!yes("/Madrid/#;/CompanyB/#"));
        assert!(yes("/Nowhere,/CompanyA/OrgB/UnitC"));
        assert!(
            !ScopeQuery::parse("/#")
                .unwrap()
                .matches(&entity(&["T"], &[]))
        );
        assert!(ScopeQuery::parse("Madrid").is_err());
        assert!(ScopeQuery::parse("/A/#/B").is_err());
    }
}
