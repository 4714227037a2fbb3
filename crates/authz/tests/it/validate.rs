//! `validate_source` and `validate_dir`: every problem is reported at the file, line and
//! column a user would go to, with a message and (when Cedar has one) a hint.

use std::fs;

use polity_authz::{Diagnostic, validate_dir, validate_source};

/// The 1-based line and column where `needle` first occurs in `text`.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let offset = text.find(needle).expect("needle in text");
    polity_authz::line_column(text, offset)
}

fn only(diagnostics: Vec<Diagnostic>) -> Diagnostic {
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    diagnostics.into_iter().next().unwrap()
}

const TYPO: &str = r#"// Admins enter their own city.
@id("admin-enter")
permit (
  principal is Polity::CityAdmin,
  action == Polity::Action::"tenant.access",
  resource is Polity::Tenant
)
when { resource.nmae == principal.tenant };
"#;

const UNKNOWN_ACTION: &str = r#"// Admins delete entities.
@id("admin-delete")
permit (
  principal is Polity::CityAdmin,
  action == Polity::Action::"entity.delete",
  resource is Polity::Entity
);
"#;

#[test]
fn a_typo_in_an_attribute_name_points_at_it() {
    let d = only(validate_source("typo.cedar", TYPO).unwrap_err());
    assert_eq!(d.file, "typo.cedar");
    assert_eq!(
        (d.line, d.column),
        position_of(TYPO, "resource.nmae"),
        "{d}"
    );
    assert_eq!((d.line, d.column), (8, 8));
    assert!(d.message.contains("nmae"), "{d}");
    assert!(d.message.contains("admin-enter"), "names the policy: {d}");
    assert!(d.to_string().starts_with("typo.cedar:8:8: "), "{d}");
}

#[test]
fn an_unknown_action_points_at_it() {
    let d = only(validate_source("delete.cedar", UNKNOWN_ACTION).unwrap_err());
    assert_eq!(d.file, "delete.cedar");
    assert_eq!(
        (d.line, d.column),
        position_of(UNKNOWN_ACTION, "Polity::Action::\"entity.delete\""),
        "{d}"
    );
    assert_eq!((d.line, d.column), (5, 13));
    assert!(d.message.contains("entity.delete"), "{d}");
}

#[test]
fn a_syntax_error_points_at_it() {
    let text = "@id(\"x\")\npermit (principal, action, resource)\nwhen { principal.tenant == };\n";
    let d = only(validate_source("syntax.cedar", text).unwrap_err());
    assert_eq!((d.line, d.column), (3, 28), "{d}");
}

#[test]
fn a_directory_is_validated_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("typo.cedar"), TYPO).unwrap();
    fs::write(dir.path().join("delete.cedar"), UNKNOWN_ACTION).unwrap();
    fs::write(
        dir.path().join("good.cedar"),
        "// Liveness.\n@id(\"health\")\npermit (principal, action == Polity::Action::\"health.read\", resource is Polity::Node);\n",
    )
    .unwrap();
    let mut diagnostics = validate_dir(dir.path()).unwrap_err();
    diagnostics.sort_by(|a, b| a.file.cmp(&b.file));
    assert_eq!(diagnostics.len(), 2, "{diagnostics:#?}");
    assert!(diagnostics[0].file.ends_with("delete.cedar"));
    assert_eq!((diagnostics[0].line, diagnostics[0].column), (5, 13));
    assert!(diagnostics[1].file.ends_with("typo.cedar"));
    assert_eq!((diagnostics[1].line, diagnostics[1].column), (8, 8));

    fs::remove_file(dir.path().join("typo.cedar")).unwrap();
    fs::remove_file(dir.path().join("delete.cedar")).unwrap();
    let summary = validate_dir(dir.path()).unwrap();
    assert_eq!((summary.files, summary.permits, summary.forbids), (1, 1, 0));
}

#[test]
fn a_policy_that_can_never_apply_is_a_warning() {
    // The schema does not declare metrics.read on a Tenant.
    let text = "// never\n@id(\"never\")\npermit (principal, action == Polity::Action::\"metrics.read\", resource is Polity::Tenant);\n";
    let summary = validate_source("never.cedar", text).unwrap();
    assert!(!summary.warnings.is_empty(), "{summary:?}");
    for w in &summary.warnings {
        // A policy's position is where its text starts: its first annotation.
        assert_eq!(
            (w.file.as_str(), w.line, w.column),
            ("never.cedar", 2, 1),
            "{w}"
        );
        assert!(w.message.contains("never"), "{w}");
    }
    assert!(
        summary
            .warnings
            .iter()
            .any(|w| w.message.contains("impossible")),
        "{:?}",
        summary.warnings
    );
}
