//! Key and tag formats: `"user:{id}"` becomes `format!("user:{id}", id = id)`
//! after checking that every `{name}` is an argument of the function.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Ident, LitStr};

/// `format!(literal, name = name, …)` over the function's arguments.
/// `arguments` are the names the format may use.
pub(crate) fn expand(
    literal: &LitStr,
    option: &str,
    arguments: &[Ident],
) -> syn::Result<TokenStream> {
    let mut used: Vec<&Ident> = Vec::new();
    for name in names(literal, option)? {
        let Some(argument) = arguments.iter().find(|a| *a == &name) else {
            let known: Vec<String> = arguments.iter().map(ToString::to_string).collect();
            let known = if known.is_empty() {
                "the function has none".to_owned()
            } else {
                format!("the arguments are: {}", known.join(", "))
            };
            return Err(syn::Error::new(
                literal.span(),
                format!("`{{{name}}}` in `{option}` is not an argument of the function; {known}"),
            ));
        };
        if !used.contains(&argument) {
            used.push(argument);
        }
    }
    Ok(quote!(::std::format!(#literal, #(#used = #used),*)))
}

/// The argument names a format refers to, in order, with repeats.
fn names(literal: &LitStr, option: &str) -> syn::Result<Vec<String>> {
    let text = literal.value();
    let error = |message: String| syn::Error::new(literal.span(), message);
    let mut names = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
            }
            '{' => {
                let mut inside = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => inside.push(c),
                        None => {
                            return Err(error(format!(
                                "`{option}` has an unclosed `{{`; write `{{{{` for a literal brace"
                            )));
                        }
                    }
                }
                let name = inside.split(':').next().unwrap_or_default().trim();
                if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err(error(format!(
                        "`{{{inside}}}` in `{option}`: name the argument, e.g. `{{id}}`; \
                         positional arguments have no meaning here"
                    )));
                }
                names.push(name.to_owned());
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
            }
            '}' => {
                return Err(error(format!(
                    "`{option}` has an unmatched `}}`; write `}}}}` for a literal brace"
                )));
            }
            _ => {}
        }
    }
    Ok(names)
}
