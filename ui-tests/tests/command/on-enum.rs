use interlock::prelude::*;

#[derive(Command, Clone)]
enum AccountCommand {
    Open { account: Ulid },
}

fn main() {}
