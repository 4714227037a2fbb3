//! Loading policy directories: defaults round-trip through files, and any problem fails
//! the load with a diagnostic instead of falling back to something that allows.

use std::fs;

use polity_authz::{CedarAuthorizer, DEFAULT_POLICIES, LoadError};
use polity_identity::Principal;
use polity_trust::{Action, Authorizer, Caller, Context, Resource};

use crate::fixtures::{adelaide, melbourne};

fn write_defaults(dir: &std::path::Path) {
    for (name, text) in DEFAULT_POLICIES {
        fs::write(dir.join(name), text).unwrap();
    }
}

#[test]
fn a_directory_of_the_defaults_decides_like_the_builtin() {
    let dir = tempfile::tempdir().unwrap();
    write_defaults(dir.path());
    fs::write(dir.path().join("README.md"), "not a policy").unwrap();
    let from_dir = CedarAuthorizer::from_dir(dir.path()).unwrap();
    let builtin = CedarAuthorizer::builtin().unwrap();
    assert_eq!(from_dir.policy_ids(), builtin.policy_ids());
    assert_eq!(from_dir.summary(), builtin.summary());
    let admin = Caller::of(Principal::CityAdmin(adelaide()));
    let ctx = Context::default();
    assert!(from_dir.allows(
        &admin,
        Action::TenantAccess,
        &Resource::Tenant(adelaide()),
        &ctx
    ));
    assert!(!from_dir.allows(
        &admin,
        Action::TenantAccess,
        &Resource::Tenant(melbourne()),
        &ctx
    ));
}

#[test]
fn a_broken_file_fails_the_load_and_never_falls_back_to_allow() {
    let dir = tempfile::tempdir().unwrap();
    // A policy that would allow everything, next to a broken one.
    fs::write(
        dir.path().join("a-open.cedar"),
        "@id(\"open\")\npermit (principal, action, resource);\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("b-broken.cedar"),
        "// missing the closing parenthesis\n@id(\"broken\")\npermit (principal, action, resource;\n",
    )
    .unwrap();
    let err = CedarAuthorizer::from_dir(dir.path()).unwrap_err();
    let LoadError::Invalid(diagnostics) = &err;
    assert_eq!(diagnostics.len(), 1, "{err}");
    let d = &diagnostics[0];
    assert!(d.file.ends_with("b-broken.cedar"), "{d}");
    assert_eq!((d.line, d.column), (3, 36), "{d}");
    let shown = err.to_string();
    assert!(shown.contains("b-broken.cedar:3:36"), "{shown}");
    assert!(shown.contains("polity validate"), "{shown}");
}

#[test]
fn an_invalid_policy_fails_the_load() {
    let dir = tempfile::tempdir().unwrap();
    write_defaults(dir.path());
    fs::write(
        dir.path().join("extra.cedar"),
        "@id(\"extra\")\npermit (principal, action, resource is Polity::Sensor);\n",
    )
    .unwrap();
    let err = CedarAuthorizer::from_dir(dir.path()).unwrap_err();
    let d = &err.diagnostics()[0];
    assert!(d.file.ends_with("extra.cedar"), "{d}");
    assert_eq!(d.line, 2, "{d}");
    assert!(d.message.contains("Polity::Sensor"), "{d}");
}

#[test]
fn an_empty_or_missing_directory_fails_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let err = CedarAuthorizer::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("no .cedar files"), "{err}");
    let err = CedarAuthorizer::from_dir(dir.path().join("missing")).unwrap_err();
    assert!(
        err.to_string().contains("cannot read the policy directory"),
        "{err}"
    );
}

#[test]
fn duplicate_ids_across_files_fail_the_load() {
    let dir = tempfile::tempdir().unwrap();
    write_defaults(dir.path());
    fs::write(dir.path().join("zz-copy.cedar"), DEFAULT_POLICIES[0].1).unwrap();
    let err = CedarAuthorizer::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("is used twice"), "{err}");
}

#[test]
fn a_non_utf8_file_is_reported_where_it_breaks() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("bad.cedar"), b"// ok\n// \xff\n").unwrap();
    let err = CedarAuthorizer::from_dir(dir.path()).unwrap_err();
    let d = &err.diagnostics()[0];
    assert_eq!((d.line, d.column), (2, 4), "{d}");
    assert!(d.message.contains("UTF-8"), "{d}");
}
