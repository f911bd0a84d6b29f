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

async fn run(app: &::interlock::Application) -> ::std::result::Result<u64, ::interlock::CommandError<No>> {
    app.dispatch(Do { id: 1, cid: ::std::option::Option::None }).await
}

fn main() {
    let _ = interlock::mem::size_of::<u8>();
    let _ = run;
    let _ = Tuple(1);
}
