//! What `#[derive(Event)]` rejects before expanding.

use super::ast::EventInput;
use crate::ctxt::Ctxt;

pub(crate) fn check(cx: &mut Ctxt, input: &EventInput<'_>) {
    if let syn::Data::Union(u) = input.data {
        cx.error_spanned(
            u.union_token,
            "`#[derive(Event)]` supports structs and enums, not unions",
        );
    }
    if !input.generics.params.is_empty() {
        cx.error_spanned(
            input.generics,
            "an event type cannot be generic: it is stored under one name and version",
        );
    }
    match &input.name {
        None => cx.error_at(
            input.attr_span,
            format_args!(
                "missing event name; add `#[event(name = \"...\")]` to `{}` with a name that stays stable when the type is renamed",
                input.ident
            ),
        ),
        Some(name) if name.value().trim().is_empty() => cx.error_spanned(name, "the event name cannot be empty"),
        Some(_) => {}
    }
    let version = input.version.map_or(1, |(v, _)| v);
    if let Some((0, span)) = input.version {
        cx.error_at(span, "event versions start at 1");
    }
    if let Some(from) = &input.upcast_from
        && version < 2
    {
        cx.error_spanned(
            from,
            "`upcast_from` needs `version = N` with N of at least 2: it names the type of version N - 1",
        );
    }
}
