use interlock::prelude::*;

#[derive(Event)]
#[event(name = "bank.bits")]
union Bits {
    a: u32,
    b: f32,
}

fn main() {}
