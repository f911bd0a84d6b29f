//! Procedural macros of Interlock. Use them through the `interlock` crate,
//! which documents them; generated code reaches the runtime only through
//! `::interlock::__private` (or the path given with `crate = "..."`).
//!
//! Each macro is parsed into a typed form (`ast`), checked (`check`) and
//! expanded (`expand`); every mistake found is reported at once, and on error
//! the user's item is still emitted so one mistake does not cascade.

use proc_macro::TokenStream;

mod aggregate;
mod command;
mod ctxt;
mod event;
mod event_set;
mod method;
mod projection;
mod saga;
mod util;

/// Derives `interlock::Event`. See the `interlock` crate.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    event::derive(input.into()).into()
}

/// Derives `interlock::Command`. See the `interlock` crate.
#[proc_macro_derive(Command, attributes(command, aggregate_id, command_id, peer_id))]
pub fn derive_command(input: TokenStream) -> TokenStream {
    command::derive(input.into()).into()
}

/// Turns an impl block into an aggregate. See the `interlock` crate.
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, item: TokenStream) -> TokenStream {
    aggregate::expand(args.into(), item.into()).into()
}

/// Turns an impl block into a projection. See the `interlock` crate.
#[proc_macro_attribute]
pub fn projection(args: TokenStream, item: TokenStream) -> TokenStream {
    projection::expand(args.into(), item.into()).into()
}

/// Turns an impl block into a saga. See the `interlock` crate.
#[proc_macro_attribute]
pub fn saga(args: TokenStream, item: TokenStream) -> TokenStream {
    saga::expand(args.into(), item.into()).into()
}

/// Marks an event handler inside a `#[projection]` impl block.
#[proc_macro_attribute]
pub fn handles_event(args: TokenStream, item: TokenStream) -> TokenStream {
    util::misplaced(
        "handles_event",
        "a method inside a `#[projection]` impl block",
        "#[projection]",
        args.into(),
        item.into(),
    )
    .into()
}

/// Marks a query handler inside a `#[projection]` impl block.
#[proc_macro_attribute]
pub fn handles_query(args: TokenStream, item: TokenStream) -> TokenStream {
    util::misplaced(
        "handles_query",
        "a method inside a `#[projection]` impl block",
        "#[projection]",
        args.into(),
        item.into(),
    )
    .into()
}

/// Marks a step inside a `#[saga]` impl block.
#[proc_macro_attribute]
pub fn saga_step(args: TokenStream, item: TokenStream) -> TokenStream {
    util::misplaced(
        "saga_step",
        "a method inside a `#[saga]` impl block",
        "#[saga]",
        args.into(),
        item.into(),
    )
    .into()
}

/// Marks a deadline handler inside a `#[saga]` impl block.
#[proc_macro_attribute]
pub fn saga_deadline(args: TokenStream, item: TokenStream) -> TokenStream {
    util::misplaced(
        "saga_deadline",
        "a method inside a `#[saga]` impl block",
        "#[saga]",
        args.into(),
        item.into(),
    )
    .into()
}

/// Marks the compensation of a `#[saga]`: run by the runtime when a
/// command a step dispatched is refused, or a step or deadline keeps
/// failing; the saga ends after it.
#[proc_macro_attribute]
pub fn saga_compensation(args: TokenStream, item: TokenStream) -> TokenStream {
    util::misplaced(
        "saga_compensation",
        "a method inside a `#[saga]` impl block",
        "#[saga]",
        args.into(),
        item.into(),
    )
    .into()
}

/// Marks a command handler inside an `#[aggregate]` impl block.
#[proc_macro_attribute]
pub fn handles_command(args: TokenStream, item: TokenStream) -> TokenStream {
    util::misplaced(
        "handles_command",
        "a method inside an `#[aggregate]` impl block",
        "#[aggregate(name = \"...\")]",
        args.into(),
        item.into(),
    )
    .into()
}

/// Marks an event applier inside an `#[aggregate]` impl block.
#[proc_macro_attribute]
pub fn applies_event(args: TokenStream, item: TokenStream) -> TokenStream {
    util::misplaced(
        "applies_event",
        "a method inside an `#[aggregate]` impl block",
        "#[aggregate(name = \"...\")]",
        args.into(),
        item.into(),
    )
    .into()
}
