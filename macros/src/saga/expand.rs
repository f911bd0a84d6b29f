//! The code `#[saga]` generates: the step and deadline event sets and the
//! `Saga` impl routing events to instances and steps.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::check::{CheckedStep, Kind, Model};
use crate::util::type_text;

fn call(p: &TokenStream, ty: &syn::Type, step: &CheckedStep, value: &syn::Ident) -> TokenStream {
    let method = &step.method;
    let ctx = step.takes_ctx.then(|| quote!(, ctx));
    let call = quote!(#ty::#method(self, &#value #ctx));
    let call = if step.is_async { quote!(#call.await) } else { call };
    let ret = &step.ret;
    quote_spanned!(ret.span()=> <#ret as #p::IntoSagaResult>::into_saga_result(#call))
}

pub(crate) fn expand(model: &Model) -> TokenStream {
    let krate = &model.krate;
    let p = quote!(#krate::__private);
    let ty = &model.self_ty;
    let name = &model.name;
    let owner = format!("saga `{}`", type_text(ty));
    let events = format_ident!("__InterlockSagaEvents");
    let deadlines = format_ident!("__InterlockSagaDeadlines");
    let event = format_ident!("event");
    let step_types: Vec<&syn::Type> = model.steps.iter().map(|s| &s.event).collect();
    let deadline_types: Vec<&syn::Type> = model.deadlines.iter().map(|s| &s.event).collect();
    let (event_set, variants) = crate::event_set::expand(&p, &events, &step_types, &owner);
    let (deadline_set, deadline_variants) =
        crate::event_set::expand(&p, &deadlines, &deadline_types, &format!("{owner} (deadlines)"));

    let routes = model.steps.iter().zip(&variants).map(|(step, variant)| {
        let kind = match step.kind {
            Kind::Start => quote!(#p::StepKind::Start),
            Kind::Step => quote!(#p::StepKind::Step),
            Kind::End => quote!(#p::StepKind::End),
        };
        // Spanned on the user's `key = field`: a field the event lacks is
        // reported there.
        let key = step
            .key
            .as_ref()
            .map(|k| quote_spanned!(k.span()=> #p::saga_key(&#event.#k)));
        quote!(#events::#variant(ref #event) => #p::SagaRoute { key: #key, kind: #kind },)
    });
    let step_arms = model.steps.iter().zip(&variants).map(|(step, variant)| {
        let call = call(&p, ty, step, &event);
        quote!(#events::#variant(#event) => #call,)
    });
    let deadline_arms = model.deadlines.iter().zip(&deadline_variants).map(|(step, variant)| {
        let call = call(&p, ty, step, &event);
        let ends = step.kind == Kind::End;
        quote!(#deadlines::#variant(#event) => #call.map(|()| #ends),)
    });

    let compensates = model.compensation.is_some();
    let compensation = match &model.compensation {
        Some(c) => {
            let method = &c.method;
            let ctx = c.takes_ctx.then(|| quote!(, ctx));
            let call = quote!(#ty::#method(self, failure #ctx));
            let call = if c.is_async { quote!(#call.await) } else { call };
            let ret = &c.ret;
            quote_spanned!(ret.span()=> <#ret as #p::IntoSagaResult>::into_saga_result(#call))
        }
        None => quote!(#p::Ok(())),
    };
    quote! {
        const _: () = {
            #event_set
            #deadline_set

            #(
                #[automatically_derived]
                impl #p::DeadlineOf<#ty> for #deadline_types {}
            )*

            #[automatically_derived]
            impl #p::Saga for #ty {
                const NAME: &'static str = #name;
                type Event = #events;
                type Deadline = #deadlines;

                fn route(event: &#events) -> #p::SagaRoute {
                    match *event {
                        #(#routes)*
                    }
                }

                #[allow(clippy::manual_async_fn, unused_variables)]
                fn step<'a>(
                    &'a mut self,
                    event: #events,
                    ctx: &'a mut #p::SagaContext<Self>,
                ) -> impl #p::Future<Output = #p::SagaResult> + ::core::marker::Send + 'a {
                    async move {
                        match event {
                            #(#step_arms)*
                        }
                    }
                }

                const COMPENSATES: bool = #compensates;

                #[allow(clippy::manual_async_fn, unused_variables)]
                fn compensate<'a>(
                    &'a mut self,
                    failure: &'a #p::SagaFailure,
                    ctx: &'a mut #p::SagaContext<Self>,
                ) -> impl #p::Future<Output = #p::SagaResult> + ::core::marker::Send + 'a {
                    async move { #compensation }
                }

                #[allow(clippy::manual_async_fn, unused_variables)]
                fn deadline<'a>(
                    &'a mut self,
                    event: #deadlines,
                    ctx: &'a mut #p::SagaContext<Self>,
                ) -> impl #p::Future<Output = #p::Result<bool, #p::HandlerFailure>> + ::core::marker::Send + 'a {
                    async move {
                        match event {
                            #(#deadline_arms)*
                        }
                    }
                }
            }
        };
    }
}
