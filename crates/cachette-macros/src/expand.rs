//! The expansion: the function keeps its signature; its body computes the
//! key and the options, moves the arguments into the original body (a
//! future for an `async fn`, a closure for a `fn`), and hands that to
//! `cachette::__private`, which calls `get_or_load`.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat};

use crate::format;
use crate::options::Options;
use crate::signature::{self, Argument, Returns};

/// Rewrites the function.
pub(crate) fn expand(options: &Options, function: ItemFn) -> syn::Result<TokenStream> {
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = function;
    let arguments = signature::arguments(&sig)?;
    let (returns, output) = signature::returns(&sig)?;
    let names: Vec<_> = arguments.iter().map(|a| a.name.clone()).collect();
    let key = match &options.key {
        Some(literal) => format::expand(literal, "key", &names)?,
        None => default_key(&options.krate, &sig.ident, &arguments),
    };
    let tags = options
        .tags
        .iter()
        .map(|tag| format::expand(tag, "tags", &names))
        .collect::<syn::Result<Vec<_>>>()?;
    let tags = (!tags.is_empty()).then(|| quote!(.tags([#(#tags),*])));
    let setters = options.setters();
    let owned = arguments.iter().filter_map(|argument| {
        let elem = argument.borrowed.as_ref()?;
        let (name, owned) = (&argument.name, owned_name(argument));
        Some(quote_spanned! {argument.ty.span()=>
            let #owned = <#elem as ::std::borrow::ToOwned>::to_owned(#name);
        })
    });
    let (cache, krate) = (&options.cache, &options.krate);
    let call = call(&sig, &arguments, returns, &output, &block, options);
    // The arguments are rebound `mut` inside the body where they were `mut`.
    for input in &mut sig.inputs {
        if let FnArg::Typed(typed) = input
            && let Pat::Ident(binding) = &mut *typed.pat
        {
            binding.mutability = None;
        }
    }
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            let __cachette_cache = &(#cache);
            let __cachette_key: ::std::string::String = #key;
            let __cachette_options = #krate::cache::EntryOptions::new() #setters #tags;
            #(#owned)*
            #call
        }
    })
}

/// The body as a future (`async fn`) or a closure (`fn`), and the call of
/// the `__private` helper that hands it to `get_or_load`.
fn call(
    sig: &syn::Signature,
    arguments: &[Argument],
    returns: Returns,
    output: &syn::Type,
    block: &syn::Block,
    options: &Options,
) -> TokenStream {
    let (cache, krate) = (&options.cache, &options.krate);
    let rebinds: Vec<_> = arguments.iter().map(rebind).collect();
    let shape = returns.shape(krate);
    if sig.asyncness.is_some() {
        let helper = if returns.fallible() {
            quote!(fallible)
        } else {
            quote!(infallible)
        };
        quote_spanned! {cache.span()=>
            let __cachette_body = async move {
                #(#rebinds)*
                // Pins the block's output to the declared type, so that `?`
                // and `return` in the body infer as they did in the function.
                #[allow(
                    unknown_lints, unreachable_code, clippy::diverging_sub_expression,
                    clippy::empty_loop, clippy::let_unit_value, clippy::needless_return
                )]
                if false {
                    let __cachette_declared: #output = loop {};
                    return __cachette_declared;
                }
                #block
            };
            #krate::__private::#helper(
                __cachette_cache, &__cachette_key, &__cachette_options, #shape, __cachette_body,
            )
            .await
        }
    } else {
        let helper = if returns.fallible() {
            quote!(blocking_fallible)
        } else {
            quote!(blocking_infallible)
        };
        quote_spanned! {cache.span()=>
            let __cachette_body = move || -> #output {
                #(#rebinds)*
                #block
            };
            #krate::__private::#helper(
                &__cachette_key, &__cachette_options, #shape, __cachette_body,
                |key, loader, options| __cachette_cache.get_or_load(key, loader, options),
            )
        }
    }
}

/// `{module_path}::{function}:{argument}:…`, each argument through
/// `cachette::KeyPart`.
fn default_key(krate: &syn::Path, function: &syn::Ident, arguments: &[Argument]) -> TokenStream {
    let function = function.to_string();
    let parts = arguments.iter().map(|argument| {
        let (name, span) = (&argument.name, argument.ty.span());
        // The whole call spans the argument's type, so that a type that
        // cannot form a key is reported there alone.
        let krate = krate.to_token_stream().into_iter().map(|mut token| {
            token.set_span(span);
            token
        });
        quote_spanned! {span=>
            #(#krate)*::__private::key_part(&mut __cachette_key, &#name);
        }
    });
    quote! {{
        let mut __cachette_key = ::std::string::String::from(
            ::std::concat!(::std::module_path!(), "::", #function),
        );
        #(#parts)*
        __cachette_key
    }}
}

/// The owned copy of a `&T` argument.
fn owned_name(argument: &Argument) -> syn::Ident {
    format_ident!("__cachette_owned_{}", argument.name)
}

/// How the body sees an argument: a borrow of its owned copy for `&T`, a
/// `mut` binding where it was `mut`.
fn rebind(argument: &Argument) -> TokenStream {
    let name = &argument.name;
    let mutable = argument.mutable.then(|| quote!(mut));
    match &argument.borrowed {
        Some(elem) => {
            let owned = owned_name(argument);
            quote!(let #mutable #name: &#elem = ::std::borrow::Borrow::borrow(&#owned);)
        }
        None if argument.mutable => quote!(#[allow(unused_mut)] let mut #name = #name;),
        None => quote!(),
    }
}
