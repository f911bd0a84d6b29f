//! The typed form of a `#[derive(Event)]` input.

use proc_macro2::Span;
use syn::spanned::Spanned;

use crate::ctxt::Ctxt;
use crate::util;

pub(crate) struct EventInput<'a> {
    pub(crate) ident: &'a syn::Ident,
    pub(crate) generics: &'a syn::Generics,
    pub(crate) data: &'a syn::Data,
    /// `name = "..."`.
    pub(crate) name: Option<syn::LitStr>,
    /// `version = N`, with the span of the literal.
    pub(crate) version: Option<(u32, Span)>,
    /// `upcast_from = Type`.
    pub(crate) upcast_from: Option<syn::Type>,
    pub(crate) krate: syn::Path,
    /// Where to point errors about the attribute as a whole.
    pub(crate) attr_span: Span,
}

const ARGUMENTS: &[&str] = &["name", "version", "upcast_from", "crate"];

impl<'a> EventInput<'a> {
    pub(crate) fn from_syn(cx: &mut Ctxt, input: &'a syn::DeriveInput) -> Option<Self> {
        let mut parsed = EventInput {
            ident: &input.ident,
            generics: &input.generics,
            data: &input.data,
            name: None,
            version: None,
            upcast_from: None,
            krate: util::default_crate(),
            attr_span: input.ident.span(),
        };
        for attr in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
            parsed.attr_span = attr.span();
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    if parsed.name.is_some() {
                        return Err(util::duplicate(&meta, "name"));
                    }
                    parsed.name = Some(meta.value()?.parse()?);
                } else if meta.path.is_ident("version") {
                    if parsed.version.is_some() {
                        return Err(util::duplicate(&meta, "version"));
                    }
                    let lit: syn::LitInt = meta.value()?.parse()?;
                    let value = lit
                        .base10_parse::<u32>()
                        .map_err(|_| syn::Error::new_spanned(&lit, "the version is a whole number from 1"))?;
                    parsed.version = Some((value, lit.span()));
                } else if meta.path.is_ident("upcast_from") {
                    if parsed.upcast_from.is_some() {
                        return Err(util::duplicate(&meta, "upcast_from"));
                    }
                    parsed.upcast_from = Some(meta.value()?.parse()?);
                } else if meta.path.is_ident("crate") {
                    parsed.krate = util::parse_crate_path(&meta)?;
                } else {
                    return Err(util::unknown_argument(&meta, "event", ARGUMENTS));
                }
                Ok(())
            });
            if let Err(e) = result {
                cx.syn_error(e);
            }
        }
        Some(parsed)
    }
}
