//! The options of the attribute: `cache = …`, `key = "…"`, `tags = […]`
//! and the durations, read and checked at compile time.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, LitStr, Token};

/// Every option the attribute knows, as the error for an unknown one lists them.
const KNOWN: &str = "cache, key, tags, ttl, soft_ttl, negative_ttl, fail_safe, jitter, crate";

/// The duration options: the name in the attribute is the name of the
/// `EntryOptions` setter.
const DURATIONS: [&str; 5] = ["ttl", "soft_ttl", "negative_ttl", "fail_safe", "jitter"];

/// What the attribute says.
pub(crate) struct Options {
    /// The expression giving the cache.
    pub(crate) cache: Expr,
    /// The key format, if given.
    pub(crate) key: Option<LitStr>,
    /// The tag formats.
    pub(crate) tags: Vec<LitStr>,
    /// `(setter, duration)`, in the order given.
    durations: Vec<(&'static str, Duration)>,
    /// The path of the cachette crate: `::cachette`, or `crate = "…"`
    /// where a dependency renamed it.
    pub(crate) krate: syn::Path,
}

impl Options {
    /// Reads the attribute's arguments.
    pub(crate) fn parse(args: TokenStream) -> syn::Result<Options> {
        let mut cache = None;
        let mut key = None;
        let mut tags = None;
        let mut krate = None;
        let mut durations: Vec<(&'static str, Duration, Span)> = Vec::new();
        let parser =
            syn::meta::parser(|meta| {
                let name = meta.path.to_token_stream().to_string().replace(' ', "");
                match name.as_str() {
                    "cache" => once(&meta, &mut cache, meta.value()?.parse::<Expr>()?),
                    "key" => once(&meta, &mut key, meta.value()?.parse::<LitStr>()?),
                    "crate" => {
                        let literal = meta.value()?.parse::<LitStr>()?;
                        let path = literal.parse::<syn::Path>().map_err(|_| {
                            syn::Error::new(
                                literal.span(),
                                "`crate` is the path of the cachette crate, e.g. \
                                 `crate = \"::my_cachette\"` where a dependency renamed it",
                            )
                        })?;
                        once(&meta, &mut krate, path)
                    }
                    "tags" => {
                        let content;
                        let value = meta.value()?;
                        syn::bracketed!(content in value);
                        let list = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?;
                        once(&meta, &mut tags, list.into_iter().collect())
                    }
                    _ => match DURATIONS.iter().find(|known| **known == name) {
                        Some(setter) => {
                            if durations.iter().any(|(seen, ..)| seen == setter) {
                                return Err(meta.error(format!("`{name}` is given twice")));
                            }
                            let literal = meta.value()?.parse::<LitStr>()?;
                            let duration = duration(setter, &literal)?;
                            durations.push((setter, duration, literal.span()));
                            Ok(())
                        }
                        None => Err(meta
                            .error(format!("unknown option `{name}`; the options are: {KNOWN}"))),
                    },
                }
            });
        parser.parse2(args)?;
        let cache = cache.ok_or_else(|| {
            syn::Error::new(
                Span::call_site(),
                "missing `cache = …`: the cache to memoize in, e.g. \
                 `#[cachette::cached(cache = CACHE, ttl = \"60s\")]` (any expression \
                 whose reference derefs to a `cachette::cache::Cache`)",
            )
        })?;
        check_soft_ttl(&durations)?;
        Ok(Options {
            cache,
            key,
            tags: tags.unwrap_or_default(),
            durations: durations.into_iter().map(|(s, d, _)| (s, d)).collect(),
            krate: krate.unwrap_or_else(|| syn::parse_quote!(::cachette)),
        })
    }

    /// The `EntryOptions` setter calls, e.g. `.ttl(Duration::new(60, 0))`.
    pub(crate) fn setters(&self) -> TokenStream {
        let calls = self.durations.iter().map(|(setter, duration)| {
            let setter = syn::Ident::new(setter, Span::call_site());
            let (secs, nanos) = (duration.as_secs(), duration.subsec_nanos());
            quote!(.#setter(::std::time::Duration::new(#secs, #nanos)))
        });
        quote!(#(#calls)*)
    }
}

/// Stores the value of an option given once; a second one is an error.
fn once<T>(meta: &ParseNestedMeta<'_>, slot: &mut Option<T>, value: T) -> syn::Result<()> {
    if slot.is_some() {
        return Err(meta.error("this option is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

/// A humantime duration, not zero.
fn duration(name: &str, literal: &LitStr) -> syn::Result<Duration> {
    let text = literal.value();
    let duration = humantime::parse_duration(&text).map_err(|error| {
        syn::Error::new(
            literal.span(),
            format!(
                "`{name} = \"{text}\"` is not a duration ({error}); write e.g. \"60s\", \"5m\", \
                 \"1h 30m\" or \"250ms\""
            ),
        )
    })?;
    if duration.is_zero() {
        return Err(syn::Error::new(
            literal.span(),
            format!("`{name}` is zero; leave the option out to take the cache's default"),
        ));
    }
    Ok(duration)
}

/// A soft TTL given with a TTL must be shorter (the cache checks it too,
/// but only when the function runs).
fn check_soft_ttl(durations: &[(&'static str, Duration, Span)]) -> syn::Result<()> {
    let find = |name| durations.iter().find(|(n, ..)| *n == name);
    if let (Some((_, soft, span)), Some((_, ttl, _))) = (find("soft_ttl"), find("ttl"))
        && soft >= ttl
    {
        return Err(syn::Error::new(
            *span,
            format!("`soft_ttl` ({soft:?}) must be shorter than `ttl` ({ttl:?})"),
        ));
    }
    Ok(())
}
