//! What `#[derive(Command)]` rejects before expanding.

use super::ast::CommandInput;
use crate::ctxt::Ctxt;

pub(crate) fn check(cx: &mut Ctxt, input: &CommandInput<'_>) {
    let ident = &input.input.ident;
    match &input.input.data {
        syn::Data::Struct(_) => {}
        syn::Data::Enum(e) => {
            cx.error_spanned(
                e.enum_token,
                "`#[derive(Command)]` supports structs only: one command, one type",
            );
            return;
        }
        syn::Data::Union(u) => {
            cx.error_spanned(u.union_token, "`#[derive(Command)]` supports structs only");
            return;
        }
    }
    match input.aggregate_ids.as_slice() {
        [] => cx.error_spanned(
            ident,
            format_args!(
                "command `{ident}` has no `#[aggregate_id]` field; mark the field that names the target aggregate instance with `#[aggregate_id]`"
            ),
        ),
        [_] => {}
        [_, rest @ ..] => {
            for extra in rest {
                cx.error_spanned(extra.attr, "only one field can be the `#[aggregate_id]` of a command");
            }
        }
    }
    for extra in input.peer_ids.iter().skip(1) {
        cx.error_spanned(
            extra.attr,
            "only one field can be the `#[peer_id]` of a command: a command changes its aggregate and at most one peer",
        );
    }
    for extra in input.command_ids.iter().skip(1) {
        cx.error_spanned(extra.attr, "only one field can be the `#[command_id]` of a command");
    }
    if let Some(name) = &input.name
        && name.value().trim().is_empty()
    {
        cx.error_spanned(name, "the command name cannot be empty");
    }
}
