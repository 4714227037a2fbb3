//! Policy files: reading, parsing, naming and validating them against the schema.
//!
//! Owns the embedded default policies and the one path every policy takes before it is
//! used (defaults, a directory, or a single file for `polity validate`): parse, give
//! each policy its `@id`, reject duplicates and templates, validate in strict mode.
//! It must not evaluate requests.

use std::{collections::HashMap, fs, path::Path};

use cedar_policy::{Effect, PolicyId, PolicySet, ValidationMode, Validator};

use crate::{
    diagnostic::{Diagnostic, Summary},
    vocabulary::Vocabulary,
};

/// The default policies, one file per role plus cross-cutting guards: `(file name, text)`.
pub const DEFAULT_POLICIES: &[(&str, &str)] = &[
    ("everyone.cedar", include_str!("../policies/everyone.cedar")),
    (
        "anonymous.cedar",
        include_str!("../policies/anonymous.cedar"),
    ),
    ("operator.cedar", include_str!("../policies/operator.cedar")),
    (
        "security-analyst.cedar",
        include_str!("../policies/security-analyst.cedar"),
    ),
    (
        "city-admin.cedar",
        include_str!("../policies/city-admin.cedar"),
    ),
    (
        "city-analyst.cedar",
        include_str!("../policies/city-analyst.cedar"),
    ),
    (
        "application.cedar",
        include_str!("../policies/application.cedar"),
    ),
    ("citizen.cedar", include_str!("../policies/citizen.cedar")),
    ("guards.cedar", include_str!("../policies/guards.cedar")),
];

/// The extension policy files must have.
pub const POLICY_EXTENSION: &str = "cedar";

/// Where a policy came from.
#[derive(Debug, Clone)]
struct Origin {
    file: usize,
    offset: usize,
}

/// A validated policy set and what it holds.
pub(crate) struct Compiled {
    pub(crate) policies: PolicySet,
    pub(crate) summary: Summary,
}

/// Parses and validates `files` (`(name, text)`) as one policy set.
pub(crate) fn compile(
    vocabulary: &Vocabulary,
    files: &[(String, String)],
) -> Result<Compiled, Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let mut set = PolicySet::new();
    let mut origins: HashMap<PolicyId, Origin> = HashMap::new();
    let mut summary = Summary {
        files: files.len(),
        ..Summary::default()
    };

    for (file_index, (name, text)) in files.iter().enumerate() {
        let parsed = match text.parse::<PolicySet>() {
            Ok(parsed) => parsed,
            Err(errors) => {
                for error in errors.iter() {
                    diagnostics.push(Diagnostic::from_miette(name, text, error, 0));
                }
                continue;
            }
        };
        if let Some(template) = parsed.templates().next() {
            let offset = text.find(&template.to_cedar()).unwrap_or(0);
            diagnostics.push(Diagnostic::at(
                name,
                text,
                offset,
                "policy templates (`?principal`, `?resource`) are not supported",
                Some("write a static policy that names its principal and resource types".into()),
            ));
        }
        // Cedar names a file's policies policy0, policy1, … in the order they appear.
        let mut in_order: Vec<_> = parsed
            .policies()
            .map(|p| {
                let n = p
                    .id()
                    .to_string()
                    .strip_prefix("policy")
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(usize::MAX);
                (n, p)
            })
            .collect();
        in_order.sort_by_key(|(n, _)| *n);
        let mut search_from = 0;
        for (n, policy) in in_order {
            // The policy's own text is a verbatim slice of the file: find where it starts.
            let offset = policy
                .to_cedar()
                .and_then(|t| text.get(search_from..)?.find(&t).map(|i| search_from + i))
                .unwrap_or(search_from);
            search_from = offset + 1;
            let id = match policy.annotation("id") {
                Some(id) if !id.trim().is_empty() => id.to_owned(),
                _ => format!("{name}#{}", n.saturating_add(1)),
            };
            let id = PolicyId::new(&id);
            if let Some(first) = origins.get(&id) {
                let first_file = files.get(first.file).map_or("", |(n, _)| n.as_str());
                let first_text = files.get(first.file).map_or("", |(_, t)| t.as_str());
                let (line, column) = crate::diagnostic::line_column(first_text, first.offset);
                diagnostics.push(Diagnostic::at(
                    name,
                    text,
                    offset,
                    format!(
                        "policy id `{id}` is used twice; it was first used at {first_file}:{line}:{column}"
                    ),
                    Some("give every policy a unique @id(\"…\") annotation".into()),
                ));
                continue;
            }
            match policy.effect() {
                Effect::Permit => summary.permits += 1,
                Effect::Forbid => summary.forbids += 1,
            }
            if let Err(error) = set.add(policy.new_id(id.clone())) {
                diagnostics.push(Diagnostic::at(name, text, offset, error.to_string(), None));
                continue;
            }
            origins.insert(
                id,
                Origin {
                    file: file_index,
                    offset,
                },
            );
        }
    }
    if !diagnostics.is_empty() {
        return Err(diagnostics);
    }

    let validator = Validator::new(vocabulary.schema.clone());
    let result = validator.validate(&set, ValidationMode::Strict);
    let locate = |id: &PolicyId| -> (&str, &str, usize) {
        origins
            .get(id)
            .and_then(|o| {
                let (name, text) = files.get(o.file)?;
                Some((name.as_str(), text.as_str(), o.offset))
            })
            .unwrap_or(("<policies>", "", 0))
    };
    for error in result.validation_errors() {
        let (name, text, offset) = locate(error.policy_id());
        diagnostics.push(Diagnostic::from_miette(name, text, error, offset));
    }
    for warning in result.validation_warnings() {
        let (name, text, offset) = locate(warning.policy_id());
        summary
            .warnings
            .push(Diagnostic::from_miette(name, text, warning, offset));
    }
    if diagnostics.is_empty() {
        Ok(Compiled {
            policies: set,
            summary,
        })
    } else {
        Err(diagnostics)
    }
}

/// Reads every `*.cedar` file directly in `dir`, sorted by name.
pub(crate) fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, Vec<Diagnostic>> {
    let shown = dir.display().to_string();
    let entries = fs::read_dir(dir).map_err(|e| {
        vec![Diagnostic::whole_file(
            &shown,
            format!("cannot read the policy directory: {e}"),
            Some("pass a directory that holds the .cedar policy files".into()),
        )]
    })?;
    let mut paths = Vec::new();
    let mut diagnostics = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == POLICY_EXTENSION) && path.is_file() {
                    paths.push(path);
                }
            }
            Err(e) => diagnostics.push(Diagnostic::whole_file(
                &shown,
                format!("cannot list the policy directory: {e}"),
                None,
            )),
        }
    }
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let name = path.display().to_string();
        match fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => files.push((name, text)),
                Err(e) => {
                    let offset = e.utf8_error().valid_up_to();
                    let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
                    diagnostics.push(Diagnostic::at(
                        name,
                        &text,
                        offset,
                        "the file is not valid UTF-8",
                        Some("save policy files as UTF-8".into()),
                    ));
                }
            },
            Err(e) => diagnostics.push(Diagnostic::whole_file(
                name,
                format!("cannot read the policy file: {e}"),
                None,
            )),
        }
    }
    if files.is_empty() && diagnostics.is_empty() {
        diagnostics.push(Diagnostic::whole_file(
            shown,
            "the policy directory holds no .cedar files, so every request would be denied",
            Some("add policy files, or start from the built-in defaults".into()),
        ));
    }
    if diagnostics.is_empty() {
        Ok(files)
    } else {
        Err(diagnostics)
    }
}

/// The default policies as owned `(name, text)` pairs.
pub(crate) fn default_files() -> Vec<(String, String)> {
    DEFAULT_POLICIES
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect()
}

fn with_vocabulary<T>(
    f: impl FnOnce(&Vocabulary) -> Result<T, Vec<Diagnostic>>,
) -> Result<T, Vec<Diagnostic>> {
    match Vocabulary::load() {
        Ok(v) => f(&v),
        Err(e) => Err(vec![Diagnostic::whole_file(
            "polity.cedarschema",
            e.to_string(),
            None,
        )]),
    }
}

/// Validates one policy file on its own against Polity's schema.
///
/// `file_name` is only used in diagnostics. Returns what the file holds, or every
/// problem found, each with its 1-based line and column.
pub fn validate_source(file_name: &str, text: &str) -> Result<Summary, Vec<Diagnostic>> {
    let files = [(file_name.to_owned(), text.to_owned())];
    with_vocabulary(|v| compile(v, &files).map(|c| c.summary))
}

/// Validates every `*.cedar` file in `dir`, together, as the policy set a node would
/// load with [`crate::CedarAuthorizer::from_dir`].
pub fn validate_dir(dir: impl AsRef<Path>) -> Result<Summary, Vec<Diagnostic>> {
    let files = read_dir(dir.as_ref())?;
    with_vocabulary(|v| compile(v, &files).map(|c| c.summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_every_policy_has_an_id_and_a_comment() {
        let v = Vocabulary::load().unwrap();
        let compiled = compile(&v, &default_files()).unwrap_or_else(|d| {
            panic!(
                "{}",
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert!(
            compiled.summary.warnings.is_empty(),
            "{:?}",
            compiled.summary.warnings
        );
        assert!(compiled.summary.permits >= 10);
        assert!(compiled.summary.forbids >= 8);
        for policy in compiled.policies.policies() {
            assert!(
                policy.annotation("id").is_some(),
                "policy {} has no @id",
                policy.id()
            );
        }
        // Every @id annotation is preceded by a `//` comment saying why.
        for (name, text) in DEFAULT_POLICIES {
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if line.starts_with("@id(") {
                    assert!(
                        i > 0 && lines[i - 1].starts_with("//"),
                        "{name}:{}: policy without a comment",
                        i + 1
                    );
                }
            }
        }
    }

    #[test]
    fn policies_without_id_get_one_from_their_file_and_position() {
        let v = Vocabulary::load().unwrap();
        let files = vec![(
            "x.cedar".to_owned(),
            "permit(principal, action == Polity::Action::\"health.read\", resource);\n\
             permit(principal, action == Polity::Action::\"health.read\", resource);"
                .to_owned(),
        )];
        let compiled = compile(&v, &files).unwrap();
        let mut ids: Vec<String> = compiled
            .policies
            .policies()
            .map(|p| p.id().to_string())
            .collect();
        ids.sort();
        assert_eq!(ids, ["x.cedar#1", "x.cedar#2"]);
    }

    #[test]
    fn duplicate_ids_are_rejected_with_both_positions() {
        let v = Vocabulary::load().unwrap();
        let p = "@id(\"same\")\npermit(principal, action == Polity::Action::\"health.read\", resource);\n";
        let files = vec![
            ("a.cedar".to_owned(), p.to_owned()),
            ("b.cedar".to_owned(), format!("// x\n{p}")),
        ];
        let d = compile(&v, &files).err().unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].file.as_str(), d[0].line, d[0].column),
            ("b.cedar", 2, 1)
        );
        assert!(d[0].message.contains("a.cedar:1:1"), "{}", d[0].message);
    }

    #[test]
    fn templates_are_rejected() {
        let d = validate_source(
            "t.cedar",
            "permit(principal == ?principal, action, resource);",
        )
        .err()
        .unwrap();
        assert!(d[0].message.contains("template"), "{:?}", d);
    }
}
