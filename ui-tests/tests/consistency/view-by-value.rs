use interlock::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "users.registered")]
struct Registered {
    name: String,
}

#[derive(Command, Clone)]
struct Register {
    #[aggregate_id]
    user: Ulid,
    name: String,
}

#[derive(Default)]
struct Names {
    taken: Vec<String>,
}

#[projection(model = memory)]
impl Names {
    #[handles_event]
    fn registered(&mut self, e: &Registered) {
        self.taken.push(e.name.clone());
    }
}

#[derive(Default)]
struct User;

#[aggregate(name = "users.user")]
impl User {
    #[handles_command(consistency = category)]
    fn register(&self, cmd: Register, #[view] names: Names) -> Registered {
        let _ = names;
        Registered { name: cmd.name }
    }

    #[applies_event]
    fn registered(&mut self, _: &Registered) {}
}

fn main() {}
