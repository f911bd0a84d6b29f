//! Helpers shared by the macros.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::visit_mut::VisitMut;

/// The default path of the runtime crate.
pub(crate) fn default_crate() -> syn::Path {
    syn::parse_quote!(::interlock)
}

/// Parses `crate = "path"`.
pub(crate) fn parse_crate_path(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<syn::Path> {
    let lit: syn::LitStr = meta.value()?.parse()?;
    lit.parse::<syn::Path>()
        .map_err(|_| syn::Error::new_spanned(&lit, "expected a path such as `crate = \"::interlock\"`"))
}

/// The error for a duplicated attribute argument.
pub(crate) fn duplicate(meta: &syn::meta::ParseNestedMeta<'_>, name: &str) -> syn::Error {
    meta.error(format_args!("duplicate `{name}` argument"))
}

/// The error for an unknown attribute argument, listing the known ones.
pub(crate) fn unknown_argument(meta: &syn::meta::ParseNestedMeta<'_>, attribute: &str, known: &[&str]) -> syn::Error {
    let name = meta.path.to_token_stream().to_string().replace(' ', "");
    let known = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    meta.error(format_args!(
        "unknown argument `{name}` in `#[{attribute}]`; expected one of {known}"
    ))
}

/// A type as it reads in source, for messages and duplicate detection.
pub(crate) fn type_text(ty: &impl ToTokens) -> String {
    ty.to_token_stream()
        .to_string()
        .replace(" :: ", "::")
        .replace(" < ", "<")
        .replace(" <", "<")
        .replace(" >", ">")
        .replace("& ", "&")
        .replace(" ,", ",")
}

/// Replaces `Self` in a type with `self_ty`, so a type written inside an impl
/// block means the same in generated impls for other types.
pub(crate) fn replace_self(ty: &mut syn::Type, self_ty: &syn::Type) {
    struct ReplaceSelf<'a>(&'a syn::Type);
    impl VisitMut for ReplaceSelf<'_> {
        fn visit_type_mut(&mut self, ty: &mut syn::Type) {
            if let syn::Type::Path(p) = ty
                && p.qself.is_none()
                && p.path.is_ident("Self")
            {
                *ty = self.0.clone();
                return;
            }
            syn::visit_mut::visit_type_mut(self, ty);
        }
        fn visit_type_path_mut(&mut self, p: &mut syn::TypePath) {
            // `Self::Assoc` → `<Agg>::Assoc`
            if p.qself.is_none() && p.path.segments.len() > 1 && p.path.segments[0].ident == "Self" {
                let rest: Vec<_> = p.path.segments.iter().skip(1).cloned().collect();
                let self_ty = self.0;
                let rest = quote!(#(#rest)::*);
                if let Ok(new) = syn::parse2::<syn::TypePath>(quote!(<#self_ty>::#rest)) {
                    *p = new;
                }
                return;
            }
            syn::visit_mut::visit_type_path_mut(self, p);
        }
    }
    ReplaceSelf(self_ty).visit_type_mut(ty);
}

/// The expansion of a helper attribute used outside its macro: an error on
/// the attribute, and the item unchanged.
pub(crate) fn misplaced(
    attribute: &str,
    place: &str,
    outer: &str,
    args: TokenStream,
    item: TokenStream,
) -> TokenStream {
    let span_tokens = if args.is_empty() { item.clone() } else { args };
    let message = format!("`#[{attribute}]` only works on {place}; add `{outer}` to the impl block");
    let error = syn::Error::new_spanned(first_tokens(span_tokens), message).to_compile_error();
    quote!(#error #item)
}

/// The first few tokens of a stream (to point at an item's head, not its body).
fn first_tokens(tokens: TokenStream) -> TokenStream {
    tokens
        .into_iter()
        .take_while(
            |t| !matches!(t, proc_macro2::TokenTree::Group(g) if g.delimiter() == proc_macro2::Delimiter::Brace),
        )
        .collect()
}

/// The arguments of `#[projection]` and `#[saga]`: an optional stable name
/// and `crate = "..."`.
pub(crate) struct NameArgs {
    pub(crate) name: Option<syn::LitStr>,
    pub(crate) krate: syn::Path,
    /// `model = memory | durable` (`#[projection]` only).
    pub(crate) model: Option<syn::Ident>,
}

impl NameArgs {
    pub(crate) fn parse(cx: &mut crate::ctxt::Ctxt, args: TokenStream, attribute: &str) -> Self {
        let mut parsed = NameArgs {
            name: None,
            krate: default_crate(),
            model: None,
        };
        let takes_model = attribute == "projection";
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                if parsed.name.is_some() {
                    return Err(duplicate(&meta, "name"));
                }
                parsed.name = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("crate") {
                parsed.krate = parse_crate_path(&meta)?;
            } else if takes_model && meta.path.is_ident("model") {
                if parsed.model.is_some() {
                    return Err(duplicate(&meta, "model"));
                }
                parsed.model = Some(meta.value()?.parse()?);
            } else if takes_model {
                return Err(unknown_argument(&meta, attribute, &["name", "model", "crate"]));
            } else {
                return Err(unknown_argument(&meta, attribute, &["name", "crate"]));
            }
            Ok(())
        });
        if let Err(e) = syn::parse::Parser::parse2(parser, args) {
            cx.syn_error(e);
        }
        parsed
    }

    /// The name given, or the type's own name.
    pub(crate) fn name_or_type(&self, cx: &mut crate::ctxt::Ctxt, self_ty: &syn::Type) -> String {
        match &self.name {
            Some(lit) if lit.value().trim().is_empty() => {
                cx.error_spanned(lit, "the name cannot be empty");
                String::new()
            }
            Some(lit) => lit.value(),
            None => match self_ty {
                syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default(),
                other => type_text(other),
            },
        }
    }
}

/// Parses the item of an impl-block macro; anything but an impl block is an
/// error that keeps the item (`Err` holds the tokens to return).
pub(crate) fn parse_impl_block(
    cx: &mut crate::ctxt::Ctxt,
    item: TokenStream,
    attribute: &str,
    example: &str,
) -> Result<syn::ItemImpl, TokenStream> {
    match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Impl(item)) => Ok(item),
        Ok(other) => {
            cx.error_spanned(
                item_head(&other),
                format_args!("`#[{attribute}]` goes on an impl block: `{example}`"),
            );
            let errors = std::mem::take(cx).into_compile_errors();
            Err(quote!(#errors #other))
        }
        Err(e) => {
            let error = e.to_compile_error();
            Err(quote!(#error #item))
        }
    }
}

/// The tokens naming an item, without its body.
fn item_head(item: &syn::Item) -> TokenStream {
    match item {
        syn::Item::Struct(s) => {
            let (token, ident) = (&s.struct_token, &s.ident);
            quote!(#token #ident)
        }
        syn::Item::Enum(e) => {
            let (token, ident) = (&e.enum_token, &e.ident);
            quote!(#token #ident)
        }
        syn::Item::Fn(f) => {
            let (token, ident) = (&f.sig.fn_token, &f.sig.ident);
            quote!(#token #ident)
        }
        syn::Item::Trait(t) => {
            let (token, ident) = (&t.trait_token, &t.ident);
            quote!(#token #ident)
        }
        syn::Item::Mod(m) => {
            let (token, ident) = (&m.mod_token, &m.ident);
            quote!(#token #ident)
        }
        other => first_tokens(other.to_token_stream()),
    }
}

/// `tokens` with every token at `span`, so that an error about code built
/// from them points at the user's source (a field's type) rather than at
/// the derive.
pub(crate) fn respan(tokens: proc_macro2::TokenStream, span: proc_macro2::Span) -> proc_macro2::TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let proc_macro2::TokenTree::Group(group) = &token {
                let mut inner = proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = proc_macro2::TokenTree::Group(inner);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}
