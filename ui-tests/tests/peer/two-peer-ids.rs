use interlock::prelude::*;

#[derive(Command, Clone)]
struct Split {
    #[aggregate_id]
    from: Ulid,
    #[peer_id]
    to: Ulid,
    #[peer_id]
    also: Ulid,
}

fn main() {}
