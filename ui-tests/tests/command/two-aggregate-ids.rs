use interlock::prelude::*;

#[derive(Command, Clone)]
struct Transfer {
    #[aggregate_id]
    from: Ulid,
    #[aggregate_id]
    to: Ulid,
}

fn main() {}
