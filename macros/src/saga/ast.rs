//! The typed form of a `#[saga]` impl block.

use proc_macro2::Span;

use crate::ctxt::Ctxt;
use crate::method::{self, Method};
use crate::util::{self, NameArgs};

/// The arguments of `#[saga_step(...)]` or `#[saga_deadline(...)]`.
#[derive(Default)]
pub(crate) struct StepArgs {
    pub(crate) start: Option<Span>,
    pub(crate) end: Option<Span>,
    pub(crate) key: Option<syn::Ident>,
}

pub(crate) struct SagaInput {
    pub(crate) args: NameArgs,
    pub(crate) item_span: Span,
    pub(crate) self_ty: syn::Type,
    pub(crate) steps: Vec<(Method, StepArgs)>,
    pub(crate) deadlines: Vec<(Method, StepArgs)>,
    pub(crate) compensations: Vec<Method>,
}

fn parse_step_args(cx: &mut Ctxt, method: &Method) -> StepArgs {
    let mut args = StepArgs::default();
    if matches!(method.attr.meta, syn::Meta::Path(_)) {
        return args;
    }
    let is_step = method.role == "saga_step";
    let known: &[&str] = if is_step { &["start", "end", "key"] } else { &["end"] };
    let result = method.attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("start") && is_step {
            if args.start.is_some() {
                return Err(util::duplicate(&meta, "start"));
            }
            args.start = Some(span_of(&meta.path));
        } else if meta.path.is_ident("end") {
            if args.end.is_some() {
                return Err(util::duplicate(&meta, "end"));
            }
            args.end = Some(span_of(&meta.path));
        } else if meta.path.is_ident("key") && is_step {
            if args.key.is_some() {
                return Err(util::duplicate(&meta, "key"));
            }
            args.key = Some(meta.value()?.parse()?);
        } else {
            return Err(util::unknown_argument(&meta, method.role, known));
        }
        Ok(())
    });
    if let Err(e) = result {
        cx.syn_error(e);
    }
    args
}

fn span_of(path: &syn::Path) -> Span {
    path.segments.first().map_or_else(Span::call_site, |s| s.ident.span())
}

impl SagaInput {
    pub(crate) fn from_syn(cx: &mut Ctxt, args: NameArgs, mut item: syn::ItemImpl) -> (Self, syn::ItemImpl) {
        method::check_impl_block(cx, &item, "saga", "a saga");
        let marked = method::take_marked(cx, &mut item, &["saga_step", "saga_deadline", "saga_compensation"]);
        let mut steps = Vec::new();
        let mut deadlines = Vec::new();
        let mut compensations = Vec::new();
        for m in marked {
            if m.role == "saga_compensation" {
                if !matches!(m.attr.meta, syn::Meta::Path(_)) {
                    cx.error_spanned(&m.attr, "`#[saga_compensation]` takes no arguments");
                }
                compensations.push(m);
                continue;
            }
            let step_args = parse_step_args(cx, &m);
            if m.role == "saga_step" {
                steps.push((m, step_args));
            } else {
                deadlines.push((m, step_args));
            }
        }
        let input = SagaInput {
            args,
            item_span: item.impl_token.span,
            self_ty: (*item.self_ty).clone(),
            steps,
            deadlines,
            compensations,
        };
        (input, item)
    }
}
