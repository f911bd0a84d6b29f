use interlock::prelude::*;

#[derive(Command, Clone)]
struct Transfer {
    #[aggregate_id]
    from: Ulid,
    #[peer_id]
    to: String,
}

fn main() {}
