//! What the function's signature allows: arguments that can be moved into
//! a `'static` loader, and the return types the attribute knows.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::visit::Visit;
use syn::{FnArg, GenericArgument, Ident, Pat, PathArguments, ReturnType, Signature, Type};

/// One argument of the function.
pub(crate) struct Argument {
    /// Its name.
    pub(crate) name: Ident,
    /// Whether it was declared `mut`.
    pub(crate) mutable: bool,
    /// Its type.
    pub(crate) ty: Type,
    /// For `&T`: `T`, lent to the body from an owned copy (`ToOwned`).
    pub(crate) borrowed: Option<Type>,
}

/// What the function returns, which decides how cache errors reach the
/// caller and whether "not found" is an answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Returns {
    /// `T`: always a value; a cache error runs the body uncached.
    Value,
    /// `Option<T>`: `None` is a "not found"; a cache error runs the body
    /// uncached.
    Option,
    /// `Result<T, E>`: cache errors are returned as `E::from`.
    Result,
    /// `Result<Option<T>, E>`.
    ResultOption,
}

impl Returns {
    /// Whether the function can report a cache error.
    pub(crate) fn fallible(self) -> bool {
        matches!(self, Returns::Result | Returns::ResultOption)
    }

    /// The `__private` shape: whether "not found" is an answer.
    pub(crate) fn shape(self, krate: &syn::Path) -> TokenStream {
        match self {
            Returns::Value | Returns::Result => quote!(#krate::__private::Always),
            Returns::Option | Returns::ResultOption => quote!(#krate::__private::Maybe),
        }
    }
}

/// Checks every argument; the error names the one at fault.
pub(crate) fn arguments(signature: &Signature) -> syn::Result<Vec<Argument>> {
    let mut arguments = Vec::new();
    for input in &signature.inputs {
        let typed = match input {
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new_spanned(
                    receiver,
                    "#[cachette::cached] cannot memoize a method taking `self`: the loader runs \
                     as a task of its own and must own what it uses (`'static`). Memoize a free \
                     function, or an associated function taking what it needs as owned \
                     arguments (and give it a `key`, since the default key does not name the type)",
                ));
            }
            FnArg::Typed(typed) => typed,
        };
        let Pat::Ident(binding) = &*typed.pat else {
            return Err(syn::Error::new_spanned(
                &typed.pat,
                "#[cachette::cached] needs a plain name for each argument (it forms the key and \
                 is moved into the loader): write `point: (u32, u32)` and destructure it in the body",
            ));
        };
        if binding.by_ref.is_some() || binding.subpat.is_some() {
            return Err(syn::Error::new_spanned(
                binding,
                "#[cachette::cached] needs a plain name for each argument: no `ref` or `@` pattern",
            ));
        }
        let name = binding.ident.clone();
        let borrowed = match &*typed.ty {
            Type::Reference(reference) => {
                if reference.mutability.is_some() {
                    return Err(not_static(
                        &name,
                        &typed.ty,
                        "a `&mut` cannot be lent to the loader; take the value",
                    ));
                }
                if borrows(&reference.elem) {
                    return Err(not_static(&name, &typed.ty, "take an owned type"));
                }
                Some((*reference.elem).clone())
            }
            ty if borrows(ty) => {
                return Err(not_static(
                    &name,
                    ty,
                    "take an owned type (e.g. `Option<String>` for `Option<&str>`)",
                ));
            }
            _ => None,
        };
        arguments.push(Argument {
            name,
            mutable: binding.mutability.is_some(),
            ty: (*typed.ty).clone(),
            borrowed,
        });
    }
    Ok(arguments)
}

/// The error for an argument the loader cannot own.
fn not_static(name: &Ident, ty: &Type, advice: &str) -> syn::Error {
    syn::Error::new_spanned(
        ty,
        format!(
            "argument `{name}: {}` borrows, and the loader runs as a task of its own that must \
             own its arguments (`'static`); {advice}. Only a plain `&T` is accepted: the body \
             then borrows an owned copy (`T::to_owned()`)",
            render(ty)
        ),
    )
}

/// A type as its author would write it (tokens print with spaces between).
fn render(ty: &Type) -> String {
    let mut text = ty.to_token_stream().to_string();
    for (spaced, tight) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
        ("& ", "&"),
    ] {
        text = text.replace(spaced, tight);
    }
    text
}

/// Whether a type holds a reference or a lifetime other than `'static`.
fn borrows(ty: &Type) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_type_reference(&mut self, _: &'ast syn::TypeReference) {
            self.0 = true;
        }
        fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
            if lifetime.ident != "static" {
                self.0 = true;
            }
        }
    }
    let mut finder = Finder(false);
    finder.visit_type(ty);
    finder.0
}

/// Reads the return type.
pub(crate) fn returns(signature: &Signature) -> syn::Result<(Returns, Type)> {
    let ty = match &signature.output {
        ReturnType::Default => {
            return Err(syn::Error::new(
                signature.ident.span(),
                "#[cachette::cached] needs a return value to cache: `T`, `Option<T>`, \
                 `Result<T, E>` or `Result<Option<T>, E>`",
            ));
        }
        ReturnType::Type(_, ty) => &**ty,
    };
    if let Type::ImplTrait(_) = ty {
        return Err(syn::Error::new_spanned(
            ty,
            "#[cachette::cached] cannot cache an `impl Trait`: the value is stored and read \
             back, so name its type (`T`, `Option<T>`, `Result<T, E>` or `Result<Option<T>, E>`)",
        ));
    }
    let returns = match generic(ty, "Result") {
        Some(success) if generic(success, "Option").is_some() => Returns::ResultOption,
        Some(_) => Returns::Result,
        None if generic(ty, "Option").is_some() => Returns::Option,
        None => Returns::Value,
    };
    Ok((returns, ty.clone()))
}

/// For `…::Name<A, …>`, the first type argument `A`.
fn generic<'t>(ty: &'t Type, name: &str) -> Option<&'t Type> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(arguments) = &last.arguments else {
        return None;
    };
    arguments.args.iter().find_map(|argument| match argument {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}
