//! What `#[saga]` rejects, and the checked model.

use std::collections::HashMap;

use super::ast::{SagaInput, StepArgs};
use crate::ctxt::Ctxt;
use crate::method::{self, Method, Receiver};
use crate::util::{replace_self, type_text};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Start,
    Step,
    End,
}

pub(crate) struct CheckedStep {
    pub(crate) method: syn::Ident,
    pub(crate) is_async: bool,
    pub(crate) event: syn::Type,
    pub(crate) takes_ctx: bool,
    pub(crate) ret: syn::Type,
    pub(crate) kind: Kind,
    /// The event field naming the instance (none for deadlines).
    pub(crate) key: Option<syn::Ident>,
}

pub(crate) struct Model {
    pub(crate) krate: syn::Path,
    pub(crate) self_ty: syn::Type,
    pub(crate) name: String,
    pub(crate) steps: Vec<CheckedStep>,
    pub(crate) deadlines: Vec<CheckedStep>,
    /// The `#[saga_compensation]` method, if any.
    pub(crate) compensation: Option<CheckedStep>,
}

pub(crate) fn check(cx: &mut Ctxt, input: &SagaInput) -> Option<Model> {
    let name = input.args.name_or_type(cx, &input.self_ty);
    let mut steps = Vec::new();
    let mut seen: HashMap<String, syn::Ident> = HashMap::new();
    for (m, args) in &input.steps {
        let ident = &m.sig.ident;
        let kind = match (args.start, args.end) {
            (Some(_), Some(end)) => {
                cx.error_at(
                    end,
                    "a step cannot both start and end a saga; end it from the start step with `ctx.complete()`",
                );
                Kind::Start
            }
            (Some(_), None) => Kind::Start,
            (None, Some(_)) => Kind::End,
            (None, None) => Kind::Step,
        };
        if args.key.is_none() {
            cx.error_spanned(
                &m.attr,
                format_args!(
                    "saga step `{ident}` needs a key: `#[saga_step(key = field)]` names the field of the event that identifies the saga instance"
                ),
            );
        }
        let Some(step) = check_method(cx, m, input, "saga step", kind, args) else {
            continue;
        };
        let text = type_text(&step.event);
        if let Some(first) = seen.get(&text) {
            cx.error_spanned(
                &step.event,
                format_args!("event `{text}` already has the step `{first}` in this saga"),
            );
            continue;
        }
        seen.insert(text, ident.clone());
        steps.push(step);
    }
    if !input.steps.is_empty() && !input.steps.iter().any(|(_, a)| a.start.is_some()) {
        cx.error_at(
            input.item_span,
            "this saga has no start step: mark the step that creates its state with `#[saga_step(start, key = field)]`",
        );
    }
    if input.steps.is_empty() {
        cx.error_at(
            input.item_span,
            "a saga needs at least one `#[saga_step(start, key = field)]` method",
        );
    }
    let mut deadlines = Vec::new();
    let mut seen: HashMap<String, syn::Ident> = HashMap::new();
    for (m, args) in &input.deadlines {
        let kind = if args.end.is_some() { Kind::End } else { Kind::Step };
        let Some(step) = check_method(cx, m, input, "deadline handler", kind, &StepArgs::default()) else {
            continue;
        };
        let text = type_text(&step.event);
        if let Some(first) = seen.get(&text) {
            cx.error_spanned(
                &step.event,
                format_args!("deadline `{text}` is already handled by `{first}`"),
            );
            continue;
        }
        seen.insert(text, m.sig.ident.clone());
        deadlines.push(step);
    }
    let mut compensation = None;
    for m in &input.compensations {
        if compensation.is_some() {
            cx.error_spanned(&m.sig.ident, "a saga has one `#[saga_compensation]` method");
            continue;
        }
        let Some(checked) = check_method(cx, m, input, "compensation", Kind::End, &StepArgs::default()) else {
            continue;
        };
        let is_failure = matches!(&checked.event, syn::Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "SagaFailure"));
        if !is_failure {
            cx.error_spanned(
                &checked.event,
                "the first parameter of a compensation is the failure: `failure: &SagaFailure`",
            );
            continue;
        }
        compensation = Some(checked);
    }
    Some(Model {
        krate: input.args.krate.clone(),
        self_ty: input.self_ty.clone(),
        name,
        steps,
        deadlines,
        compensation,
    })
}

fn check_method(
    cx: &mut Ctxt,
    m: &Method,
    input: &SagaInput,
    what: &str,
    kind: Kind,
    args: &StepArgs,
) -> Option<CheckedStep> {
    let ident = &m.sig.ident;
    let example = "fn NAME(&mut self, event: &MyEvent, ctx: &mut SagaContext) -> SagaResult";
    let mut ok = method::expect_receiver(
        cx,
        m,
        Receiver::RefMut,
        what,
        example,
        "a step changes the saga's state",
    );
    ok &= method::not_generic(cx, m, what);
    let mut event = method::event_param(cx, &m.params, ident, what, example, 2)?;
    replace_self(&mut event, &input.self_ty);
    if let Some(ctx) = m.params.get(1)
        && !matches!(&*ctx.ty, syn::Type::Reference(r) if r.mutability.is_some())
    {
        cx.error_spanned(
            &ctx.ty,
            format_args!("the second parameter of a {what} is its context: `ctx: &mut SagaContext`"),
        );
        ok = false;
    }
    let ret = match &m.sig.output {
        syn::ReturnType::Default => syn::parse_quote!(()),
        syn::ReturnType::Type(_, ty) => (**ty).clone(),
    };
    ok.then(|| CheckedStep {
        method: ident.clone(),
        is_async: m.sig.asyncness.is_some(),
        event,
        takes_ctx: m.params.len() == 2,
        ret,
        kind,
        key: args.key.clone(),
    })
}
