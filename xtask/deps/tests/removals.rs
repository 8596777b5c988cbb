//! Removals that must leave a workspace that loads and builds: `--verified-only` (the
//! workspace and each edited package checked, every file restored when a check fails)
//! and `--with-verification` (one candidate at a time).

mod support;

use support::{Fixture, class_of, removal_fixture};
use xtask_deps::analyze::Class;
use xtask_deps::analyze_workspace;
use xtask_deps::fix::{self, Outcome};
use xtask_sys::error::{Exit, UserError};

#[test]
fn verified_only_removes_declarations_features_and_workspace_entries_and_the_workspace_builds() {
    let fx = removal_fixture("verified");
    let ws = fx.load();
    let a = analyze_workspace(&ws);
    assert_eq!(class_of(&a, "app", "gone", "dependencies").0, "verified-unused");
    // Named by features (`unused/extra`), but nothing else depends on `unused`: no
    // unification to protect, so it goes with the feature values that name it.
    assert_eq!(class_of(&a, "app", "unused", "dependencies").0, "verified-unused");
    assert_eq!(class_of(&a, "app", "testing", "dependencies").0, "misplaced");

    // Dry run: nothing written.
    let before = fx.snapshot();
    fix::verified_only(&ws, &a, true, true, &fx.cargo()).unwrap();
    assert_eq!(fx.snapshot(), before, "--dry-run must not write");

    fix::verified_only(&ws, &a, true, false, &fx.cargo()).unwrap();
    assert_eq!(
        fx.read("app/Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n# the one we need\nused = { workspace = true }\n\n[features]\ndefault = [\"fast\"]\nfast = [\"used/extra\"]\n\n[dev-dependencies]\ntesting = { path = \"../../ext/testing\" }\n"
    );
    assert_eq!(
        fx.read("Cargo.toml"),
        "[workspace]\nmembers = [\"app\"]\nresolver = \"2\"\n\n[workspace.dependencies]\n# kept\nused = { path = \"../ext/used\" }\n"
    );
    // The result loads and builds (verified_only checked it; check again independently),
    // and a fresh analysis finds nothing left to do.
    assert_eq!(fx.cargo().metadata().unwrap(), Ok(()));
    assert_eq!(fx.cargo().check(false).unwrap(), Ok(()));
    assert_eq!(analyze_workspace(&fx.load()).failing(), 0);
}

#[test]
fn verified_only_restores_every_file_when_the_build_breaks() {
    let fx = removal_fixture("restore");
    // `helper` is needed only by the expansion of `mac::seven!(helper)`, which gets the
    // crate's name as an argument: no scan of either source sees a path to it, the
    // build does.
    fx.file(
        "app/Cargo.toml",
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nmac = { path = \"../../ext/mac\" }\nhelper = { path = \"../../ext/helper\" }\n",
    )
    .file("app/src/lib.rs", "pub fn f() -> u8 { mac::seven!(helper) }\n")
    .ext("mac", "", "#[macro_export]\nmacro_rules! seven { ($k:ident) => { $k::value() } }\n");
    fx.cargo().metadata().unwrap().unwrap(); // create Cargo.lock first: it must survive too
    let ws = fx.load();
    let a = analyze_workspace(&ws);
    assert_eq!(class_of(&a, "app", "helper", "dependencies").0, "verified-unused");
    let before = fx.snapshot();
    let err = fix::verified_only(&ws, &a, false, false, &fx.cargo()).unwrap_err();
    assert!(matches!(err.downcast_ref::<Exit>(), Some(Exit(1))));
    let after = fx.snapshot();
    let changed: Vec<_> = before.keys().filter(|k| before.get(*k) != after.get(*k)).collect();
    let manifests_and_lock: Vec<_> =
        changed.iter().filter(|p| !p.starts_with(fx.dir.join("target"))).collect();
    assert!(manifests_and_lock.is_empty(), "not restored: {manifests_and_lock:?}");
    assert!(fx.dir.join("ws/Cargo.lock").exists());
}

#[test]
fn verified_only_on_a_workspace_that_does_not_build_says_so_and_restores() {
    let fx = removal_fixture("broken-before");
    fx.file("app/src/lib.rs", "pub fn f() -> u8 { used::f() + missing_fn() }\n");
    let ws = fx.load();
    let a = analyze_workspace(&ws);
    let before = fx.snapshot();
    let err = fix::verified_only(&ws, &a, false, false, &fx.cargo()).unwrap_err();
    let user = err.downcast_ref::<UserError>().expect("a user error (exit 2)");
    assert!(user.0.contains("does not build even without the removals"), "{}", user.0);
    assert!(user.0.contains("missing_fn"), "names the compiler error: {}", user.0);
    assert_eq!(fx.snapshot(), before, "every file restored, Cargo.lock included");
}

/// Two members: `app` calls `x::special()`, which exists only with `x`'s feature `f`.
/// `app` gets that feature only through `y` (declared for that alone, named nowhere);
/// `other` enables it too, so the workspace builds without `y`, but `app` alone does not.
fn unification_fixture(name: &str) -> Fixture {
    let fx = Fixture::new(name);
    fx.ext("x", "x\n[features]\nf = []", "#[cfg(feature = \"f\")]\npub fn special() -> u8 { 1 }\n")
        .ext(
            "y",
            "y\n[dependencies]\nx = { path = \"../x\", features = [\"f\"] }",
            "pub fn g() {}\n",
        );
    fx.file("Cargo.toml", "[workspace]\nmembers = [\"app\", \"other\"]\nresolver = \"2\"\n")
        .file(
            "app/Cargo.toml",
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nx = { path = \"../../ext/x\" }\ny = { path = \"../../ext/y\" }\n",
        )
        .file("app/src/lib.rs", "pub fn f() -> u8 { x::special() }\n")
        .file(
            "other/Cargo.toml",
            "[package]\nname = \"other\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nx = { path = \"../../ext/x\", features = [\"f\"] }\n",
        )
        .file("other/src/lib.rs", "pub fn f() -> u8 { x::special() }\n");
    fx
}

#[test]
fn verified_only_checks_each_edited_package_alone_and_restores_when_one_breaks() {
    let fx = unification_fixture("unify");
    fx.cargo().metadata().unwrap().unwrap(); // Cargo.lock exists and must survive
    let ws = fx.load();
    let mut a = analyze_workspace(&ws);
    // The resolve graph shows what `y` is for (see `feature_only_is_found_in_the_resolve_graph`
    // in analysis.rs); a claim the analysis could still get wrong is simulated here, for
    // the safety net: nothing names `y`.
    assert_eq!(class_of(&a, "app", "y", "dependencies").0, "feature-only");
    let y = a.members[0].findings.iter_mut().find(|f| f.key == "y").unwrap();
    y.class = Class::VerifiedUnused;
    let before = fx.snapshot();
    let err = fix::verified_only(&ws, &a, false, false, &fx.cargo()).unwrap_err();
    assert!(matches!(err.downcast_ref::<Exit>(), Some(Exit(1))));
    let message = format!("{err:#}");
    assert!(message.contains("package `app` no longer builds on its own"), "{message}");
    assert!(message.contains("special"), "names the compiler error: {message}");
    let after = fx.snapshot();
    let changed: Vec<_> = before.keys().filter(|k| before.get(*k) != after.get(*k)).collect();
    assert!(changed.is_empty(), "not restored: {changed:?}");
    // The hole this closes: without `y` the workspace check alone passes.
    std::fs::write(
        fx.dir.join("ws/app/Cargo.toml"),
        fx.read("app/Cargo.toml").replace("y = { path = \"../../ext/y\" }\n", ""),
    )
    .unwrap();
    assert_eq!(fx.cargo().check(false).unwrap(), Ok(()));
    assert!(fx.cargo().check_package("app").unwrap().is_err());
}

#[test]
fn with_verification_removes_the_unused_and_keeps_the_macro_needed_with_the_reason() {
    let fx = Fixture::new("withver");
    fx.ext("helper", "", "pub fn value() -> u8 { 7 }\n")
        .ext("mac", "", "#[macro_export]\nmacro_rules! seven { () => { ::helper::value() } }\n")
        .ext("unused", "", "pub fn f() {}\n")
        .ext("testing", "", "pub fn check() -> bool { true }\n");
    fx.file("Cargo.toml", "[workspace]\nmembers = [\"app\"]\nresolver = \"2\"\n")
        .file(
            "app/Cargo.toml",
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nmac = { path = \"../../ext/mac\" }\nhelper = { path = \"../../ext/helper\" }\nunused = { path = \"../../ext/unused\" }\ntesting = { path = \"../../ext/testing\" }\n",
        )
        .file(
            "app/src/lib.rs",
            "pub fn f() -> u8 { mac::seven!() }\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() { assert!(testing::check()); }\n}\n",
        );
    let ws = fx.load();
    let a = analyze_workspace(&ws);
    let results = fix::with_verification(&ws, &a, false, &fx.cargo()).unwrap();
    let outcome =
        |key: &str| results.iter().find(|(c, _)| c.key == key).map(|(_, o)| o.clone()).unwrap();
    assert_eq!(outcome("unused"), Outcome::Changed);
    match outcome("helper") {
        Outcome::Kept(reason) => assert!(reason.contains("helper"), "{reason}"),
        other => panic!("helper: {other:?}"),
    }
    assert_eq!(outcome("testing"), Outcome::Changed, "misplaced: moved to dev-dependencies");
    let manifest = fx.read("app/Cargo.toml");
    assert!(manifest.contains("helper = ") && !manifest.contains("unused"), "{manifest}");
    assert!(
        manifest.ends_with("[dev-dependencies]\ntesting = { path = \"../../ext/testing\" }\n"),
        "{manifest}"
    );
    assert_eq!(fx.cargo().check(false).unwrap(), Ok(()));
}
