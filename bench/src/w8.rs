//! W8: build time of 50 aggregates × 5 commands × 5 events written with
//! the macros, against the same domain written by hand against the runtime
//! traits. Each version is its own crate in a scratch directory; after one
//! warm-up build of the dependencies, the domain crate alone is rebuilt
//! and timed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::Options;

type Error = Box<dyn std::error::Error + Send + Sync>;

pub(crate) fn run(options: &Options) -> Result<(), Error> {
    let aggregates = if options.quick { 5 } else { 50 };
    let root = scratch_dir()?;
    let runtime = workspace_runtime()?;
    let macro_secs = build_twice(&root.join("macro"), &runtime, &macro_source(aggregates))?;
    let hand_secs = build_twice(&root.join("hand"), &runtime, &hand_source(aggregates))?;
    let ratio = macro_secs / hand_secs;
    println!(
        "workload=W8 backend=none ops={aggregates} secs={macro_secs:.2} baseline=hand-written baseline_secs={hand_secs:.2} ratio={ratio:.2} aggregates={aggregates} commands_per_aggregate=5 events_per_aggregate=5"
    );
    Ok(())
}

fn scratch_dir() -> Result<PathBuf, Error> {
    let dir = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| workspace_root().join("target"), PathBuf::from);
    let dir = dir.join("bench-w8");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn workspace_runtime() -> Result<PathBuf, Error> {
    Ok(workspace_root().join("runtime").canonicalize()?)
}

/// Writes the crate, builds it once (dependencies), touches the source and
/// times the second build (the domain crate alone).
fn build_twice(dir: &Path, runtime: &Path, source: &str) -> Result<f64, Error> {
    std::fs::create_dir_all(dir.join("src"))?;
    let manifest = format!(
        "[package]\nname = \"w8-domain\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n[workspace]\n\n[dependencies]\ninterlock = {{ package = \"interlock-core\", path = {:?} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\nserde_json = \"1\"\n",
        runtime.display().to_string()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), source)?;
    cargo_build(dir)?;
    std::fs::write(dir.join("src/lib.rs"), format!("{source}\n// touched\n"))?;
    let started = Instant::now();
    cargo_build(dir)?;
    Ok(started.elapsed().as_secs_f64())
}

fn cargo_build(dir: &Path) -> Result<(), Error> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .arg("build")
        .arg("--quiet")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build failed in {}", dir.display()).into())
    }
}

fn macro_source(aggregates: usize) -> String {
    let mut s = String::from("#![allow(dead_code, missing_docs)]\nuse interlock::prelude::*;\n\n");
    for a in 0..aggregates {
        for e in 0..5 {
            let _ = writeln!(
                s,
                "#[derive(Event, Serialize, Deserialize)]\n#[event(name = \"a{a}.e{e}\")]\npub struct A{a}E{e} {{ pub n: u64 }}\n"
            );
        }
        for c in 0..5 {
            let _ = writeln!(
                s,
                "#[derive(Command, Clone)]\npub struct A{a}C{c} {{ #[aggregate_id] pub id: u64, pub n: u64 }}\n"
            );
        }
        let _ = writeln!(
            s,
            "#[derive(Default)]\npub struct A{a} {{ total: u64 }}\n\n#[aggregate(name = \"a{a}\")]\nimpl A{a} {{"
        );
        for c in 0..5 {
            let _ = writeln!(
                s,
                "    #[handles_command]\n    fn c{c}(&self, cmd: A{a}C{c}) -> A{a}E{c} {{ A{a}E{c} {{ n: cmd.n + self.total }} }}"
            );
        }
        for e in 0..5 {
            let _ = writeln!(
                s,
                "    #[applies_event]\n    fn e{e}(&mut self, e: &A{a}E{e}) {{ self.total += e.n; }}"
            );
        }
        s.push_str("}\n\n");
    }
    s
}

/// The same domain with every trait impl written out, as a user without
/// the macros would write it against the runtime traits.
fn hand_source(aggregates: usize) -> String {
    let mut s = String::from(
        "#![allow(dead_code, missing_docs)]\nuse interlock::__private as p;\nuse interlock::prelude::{Deserialize, Serialize};\n\n",
    );
    for a in 0..aggregates {
        for e in 0..5 {
            let _ = writeln!(
                s,
                "#[derive(Serialize, Deserialize)]\npub struct A{a}E{e} {{ pub n: u64 }}
impl p::Event for A{a}E{e} {{
    const NAME: &'static str = \"a{a}.e{e}\";
    const VERSION: p::SchemaVersion = p::SchemaVersion(1);
    const OLDEST: p::SchemaVersion = p::SchemaVersion(1);
    fn decode_payload(version: p::SchemaVersion, payload: &[u8]) -> Result<Self, p::EventDecodeError> {{
        p::decode_exact::<Self>(version, payload, p::SchemaVersion(1))
    }}
}}
impl p::IntoEvents<A{a}> for A{a}E{e} {{
    fn push_into(self, out: &mut p::Emitted<A{a}>) {{ out.push(A{a}Events::E{e}(self)) }}
}}
impl p::HandlerReturn<A{a}> for A{a}E{e} {{
    type Output = ();
    type Error = p::Infallible;
    fn into_decision(self) -> Result<p::Decision<A{a}, ()>, p::Infallible> {{ Ok(p::single_event::<A{a}>(A{a}Events::E{e}(self))) }}
}}
"
            );
        }
        let _ = writeln!(
            s,
            "pub enum A{a}Events {{ E0(A{a}E0), E1(A{a}E1), E2(A{a}E2), E3(A{a}E3), E4(A{a}E4) }}"
        );
        let _ = writeln!(
            s,
            "impl p::EventSet for A{a}Events {{
    const NAMES: &'static [&'static str] = &[\"a{a}.e0\", \"a{a}.e1\", \"a{a}.e2\", \"a{a}.e3\", \"a{a}.e4\"];
    fn name(&self) -> &'static str {{
        match self {{ Self::E0(_) => \"a{a}.e0\", Self::E1(_) => \"a{a}.e1\", Self::E2(_) => \"a{a}.e2\", Self::E3(_) => \"a{a}.e3\", Self::E4(_) => \"a{a}.e4\" }}
    }}
    fn encode(&self) -> Result<p::EncodedEvent, p::serde_json::Error> {{
        let (name, payload) = match self {{
            Self::E0(e) => (\"a{a}.e0\", p::serde_json::to_vec(e)?),
            Self::E1(e) => (\"a{a}.e1\", p::serde_json::to_vec(e)?),
            Self::E2(e) => (\"a{a}.e2\", p::serde_json::to_vec(e)?),
            Self::E3(e) => (\"a{a}.e3\", p::serde_json::to_vec(e)?),
            Self::E4(e) => (\"a{a}.e4\", p::serde_json::to_vec(e)?),
        }};
        Ok(p::EncodedEvent {{ name, version: p::SchemaVersion(1), payload: p::Bytes::from(payload) }})
    }}
    fn decode(name: &str, version: p::SchemaVersion, payload: &[u8]) -> Result<Self, p::EventDecodeError> {{
        match name {{
            \"a{a}.e0\" => <A{a}E0 as p::Event>::decode_payload(version, payload).map(Self::E0),
            \"a{a}.e1\" => <A{a}E1 as p::Event>::decode_payload(version, payload).map(Self::E1),
            \"a{a}.e2\" => <A{a}E2 as p::Event>::decode_payload(version, payload).map(Self::E2),
            \"a{a}.e3\" => <A{a}E3 as p::Event>::decode_payload(version, payload).map(Self::E3),
            \"a{a}.e4\" => <A{a}E4 as p::Event>::decode_payload(version, payload).map(Self::E4),
            other => Err(p::EventDecodeError::UnknownEvent {{ name: other.into() }}),
        }}
    }}
}}
#[derive(Default)]
pub struct A{a} {{ total: u64 }}
impl p::Aggregate for A{a} {{
    const NAME: &'static str = \"a{a}\";
    const STATE_VERSION: u32 = 1;
    type Event = A{a}Events;
    fn apply(&mut self, event: &A{a}Events) {{
        match event {{ A{a}Events::E0(e) => self.total += e.n, A{a}Events::E1(e) => self.total += e.n, A{a}Events::E2(e) => self.total += e.n, A{a}Events::E3(e) => self.total += e.n, A{a}Events::E4(e) => self.total += e.n }}
    }}
    fn required_services() -> Vec<p::ServiceKey> {{ Vec::new() }}
}}"
        );
        for c in 0..5 {
            let _ = writeln!(
                s,
                "#[derive(Clone)]\npub struct A{a}C{c} {{ pub id: u64, pub n: u64 }}
impl p::Command for A{a}C{c} {{
    const NAME: &'static str = \"A{a}C{c}\";
    type Id = u64;
    fn aggregate_id(&self) -> &u64 {{ &self.id }}
}}
impl p::HandledCommand for A{a}C{c} {{
    type Aggregate = A{a};
    type Output = ();
    type Error = p::Infallible;
    type View = ();
    fn handle<'a>(aggregate: &'a A{a}, command: Self, _services: &'a p::Services, _view: &'a (), _peer: Option<&'a A{a}>) -> impl p::Future<Output = Result<p::Decision<A{a}, ()>, p::HandlerError<p::Infallible>>> + Send + 'a {{
        async move {{ Ok(p::single_event::<A{a}>(A{a}Events::E{c}(A{a}E{c} {{ n: command.n + aggregate.total }}))) }}
    }}
    fn required_services() -> Vec<p::ServiceKey> {{ Vec::new() }}
}}"
            );
        }
    }
    s
}
