//! Generated code uses absolute paths only: shadowing prelude names and the
//! crate name itself changes nothing, and produces no warning.
#![deny(warnings)]
#![allow(dead_code)]

use ::interlock::prelude::*;

use std as interlock;
struct Result;
struct Ok;
struct Err;
struct Option;
struct Some;
struct None;
struct Vec;
struct Box;
struct Future;
trait Send {}
mod core {}

#[derive(Debug, thiserror::Error)]
#[error("no")]
struct No;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "h.v1")]
struct V1 {
    n: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "h.v1", version = 2, upcast_from = V1)]
struct V2 {
    n: u64,
}

impl From<V1> for V2 {
    fn from(v: V1) -> Self {
        V2 { n: v.n }
    }
}

#[derive(Command, Clone)]
#[command(name = "h.do")]
struct Do {
    #[aggregate_id]
    id: u64,
    #[command_id]
    cid: ::std::option::Option<CommandId>,
}

#[derive(Command, Clone)]
struct Tuple(#[aggregate_id] u64);

struct Clock;

#[derive(Default)]
struct State {
    n: u64,
}

#[aggregate(name = "h.state", state_version = 2)]
impl State {
    #[handles_command]
    fn run(&self, _c: Do, _clock: &Clock) -> ::std::result::Result<Reply<u64, V2>, No> {
        ::std::result::Result::Ok(Reply::new(self.n, V2 { n: 1 }))
    }

    #[handles_command]
    async fn tuple(&self, _c: Tuple) -> (V2, V2) {
        (V2 { n: 1 }, V2 { n: 2 })
    }

    #[applies_event]
    fn applied(&mut self, e: &V2) {
        self.n += e.n;
    }
}

struct Total;

#[derive(Default)]
struct Sum {
    n: u64,
}

#[projection(name = "h.sum", model = memory)]
impl Sum {
    #[handles_event]
    async fn applied(&mut self, e: &V2, _meta: &EventMeta) -> ::std::result::Result<(), No> {
        self.n += e.n;
        ::std::result::Result::Ok(())
    }

    #[handles_query]
    fn total(&self, _q: Total) -> u64 {
        self.n
    }
}

#[derive(Default)]
struct QueriesOnly;

struct Ping;

#[projection(model = memory)]
impl QueriesOnly {
    #[handles_query]
    async fn ping(&self, _q: Ping) -> bool {
        true
    }
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "h.deadline")]
struct Deadline {
    id: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct Process {
    seen: u64,
}

#[saga(name = "h.process")]
impl Process {
    #[saga_step(start, key = n)]
    async fn started(&mut self, e: &V2, ctx: &mut SagaContext) -> SagaResult {
        self.seen += e.n;
        ctx.schedule_after(::std::time::Duration::from_secs(1), Deadline { id: e.n });
        ::std::result::Result::Ok(())
    }

    #[saga_deadline(end)]
    fn deadline(&mut self, d: &Deadline) {
        self.seen += d.id;
    }
}

#[derive(Default)]
struct NoEvents;

#[derive(Command, Clone)]
struct Noop {
    #[aggregate_id]
    id: u64,
}

#[aggregate(name = "h.no_events")]
impl NoEvents {
    #[handles_command]
    fn noop(&self, _c: Noop) {}
}

async fn run(app: &::interlock::Application) -> ::std::result::Result<u64, ::interlock::CommandError<No>> {
    app.dispatch(Do { id: 1, cid: ::std::option::Option::None }).await
}

fn main() {
    let _ = interlock::mem::size_of::<u8>();
    let _ = run;
    let _ = Tuple(1);
    let _ = Noop { id: 1 };
    let _ = Total;
    let _ = Ping;
}
