//! What the [`cached`](crate::cached) attribute needs (feature `macros`):
//! [`KeyPart`], which writes the arguments of the default key, and the
//! helpers its expansion calls (`__private`, not a public API). The rules
//! of the attribute are in its own documentation.

use std::any::Any;
use std::borrow::Cow;
use std::fmt::Display;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::FutureExt;
use parking_lot::Mutex;

use crate::error::{Error, ErrorKind};

/// A value that can be part of the default key of a
/// [`#[cached]`](crate::cached) function: it writes itself so that two
/// different values of one type never write the same text.
///
/// Implemented for the integers, `bool`, `char`, `str` and `String`,
/// `Option`, tuples (up to six), slices, arrays and `Vec`, and through
/// `&`, `Box`, `Rc`, `Arc` and `Cow`. Text is written as it is, with `\`,
/// `:`, `,`, `(`, `)`, `[`, `]` and `"` escaped by a `\`, and the empty
/// text as `""`; `None` is `None` and `Some(x)` is `Some(x)`; tuples are
/// `(a,b)` and sequences `[a,b]`.
///
/// ```
/// use cachette::KeyPart;
///
/// let mut key = String::new();
/// ("a:b", Some(7u32), vec![true]).write_key(&mut key);
/// assert_eq!(key, r"(a\:b,Some(7),[true])");
/// ```
///
/// Implement it for a type of your own by writing its identity through
/// the parts it is made of (so that text is escaped), and never nothing:
///
/// ```
/// use cachette::KeyPart;
///
/// struct UserId(u64);
///
/// impl KeyPart for UserId {
///     fn write_key(&self, key: &mut String) {
///         self.0.write_key(key);
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot form a cache key",
    label = "this argument is part of the default key",
    note = "implement `cachette::KeyPart` for it, or give the key yourself: `key = \"…{{argument}}…\"`"
)]
pub trait KeyPart {
    /// Appends this value to `key`.
    fn write_key(&self, key: &mut String);
}

macro_rules! key_part_by_display {
    ($($ty:ty),*) => {$(
        impl KeyPart for $ty {
            fn write_key(&self, key: &mut String) {
                use std::fmt::Write;
                // Writing to a String cannot fail.
                let _ = write!(key, "{self}");
            }
        }
    )*};
}

key_part_by_display!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, bool
);

impl KeyPart for str {
    fn write_key(&self, key: &mut String) {
        // Never nothing: `[""]` must differ from `[]`.
        if self.is_empty() {
            key.push_str("\"\"");
        }
        for c in self.chars() {
            c.write_key(key);
        }
    }
}

impl KeyPart for char {
    fn write_key(&self, key: &mut String) {
        if matches!(self, '\\' | ':' | ',' | '(' | ')' | '[' | ']' | '"') {
            key.push('\\');
        }
        key.push(*self);
    }
}

impl KeyPart for String {
    fn write_key(&self, key: &mut String) {
        self.as_str().write_key(key);
    }
}

impl<T: KeyPart> KeyPart for Option<T> {
    fn write_key(&self, key: &mut String) {
        match self {
            None => key.push_str("None"),
            Some(value) => {
                key.push_str("Some(");
                value.write_key(key);
                key.push(')');
            }
        }
    }
}

impl<T: KeyPart> KeyPart for [T] {
    fn write_key(&self, key: &mut String) {
        key.push('[');
        for (i, item) in self.iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            item.write_key(key);
        }
        key.push(']');
    }
}

impl<T: KeyPart, const N: usize> KeyPart for [T; N] {
    fn write_key(&self, key: &mut String) {
        self.as_slice().write_key(key);
    }
}

impl<T: KeyPart> KeyPart for Vec<T> {
    fn write_key(&self, key: &mut String) {
        self.as_slice().write_key(key);
    }
}

macro_rules! key_part_through {
    ($($wrapper:ty),*) => {$(
        impl<T: KeyPart + ?Sized> KeyPart for $wrapper {
            fn write_key(&self, key: &mut String) {
                (**self).write_key(key);
            }
        }
    )*};
}

key_part_through!(&T, Box<T>, Rc<T>, Arc<T>);

impl<T: KeyPart + ToOwned + ?Sized> KeyPart for Cow<'_, T> {
    fn write_key(&self, key: &mut String) {
        (**self).write_key(key);
    }
}

impl KeyPart for () {
    fn write_key(&self, key: &mut String) {
        key.push_str("()");
    }
}

macro_rules! key_part_tuple {
    ($first:ident $(, $rest:ident)*) => {
        impl<$first: KeyPart $(, $rest: KeyPart)*> KeyPart for ($first, $($rest,)*) {
            #[allow(non_snake_case)]
            fn write_key(&self, key: &mut String) {
                let ($first, $($rest,)*) = self;
                key.push('(');
                $first.write_key(key);
                $(
                    key.push(',');
                    $rest.write_key(key);
                )*
                key.push(')');
            }
        }
    };
}

key_part_tuple!(A);
key_part_tuple!(A, B);
key_part_tuple!(A, B, C);
key_part_tuple!(A, B, C, D);
key_part_tuple!(A, B, C, D, E);
key_part_tuple!(A, B, C, D, E, F);

/// What a body threw instead of returning a value: kept for the call whose
/// body it was, which returns (or resumes) it as it is.
enum Thrown<E> {
    Error(E),
    Panic(Box<dyn Any + Send>),
}

/// A value shared by a loader and the call that made it, taken once.
struct Slot<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot(Arc::clone(&self.0))
    }
}

impl<T> Slot<T> {
    fn new(value: Option<T>) -> Self {
        Slot(Arc::new(Mutex::new(value)))
    }

    fn put(&self, value: T) {
        *self.0.lock() = Some(value);
    }

    fn take(&self) -> Option<T> {
        self.0.lock().take()
    }
}

/// The place a loader leaves what its body threw: only a call whose own
/// loader ran finds something there.
type Stash<E> = Slot<Thrown<E>>;

/// The body of an infallible function, until its load or the caller runs
/// it.
type Body<B> = Slot<B>;

impl<E> Stash<E> {
    /// What the loader returns to the cache for the body's outcome; an
    /// error or a panic is kept here, and the cache gets an [`Error`] of
    /// the same kind (when the body's error is a cachette `Error`) that
    /// carries its message to the other callers of the load.
    fn loaded<S, O>(
        &self,
        outcome: std::thread::Result<Result<O, E>>,
    ) -> Result<Option<S::Value>, Error>
    where
        S: __private::Shape<O>,
        E: Display + 'static,
    {
        let error = match outcome {
            Ok(Ok(output)) => return Ok(S::loaded(output)),
            Ok(Err(error)) => {
                let kind = (&error as &dyn Any)
                    .downcast_ref::<Error>()
                    .map_or(ErrorKind::Backend, Error::kind);
                let failed = memo_error(kind, error.to_string());
                self.put(Thrown::Error(error));
                failed
            }
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str));
                let failed = memo_error(
                    ErrorKind::Backend,
                    format!("the function panicked: {}", text.unwrap_or("(no message)")),
                );
                self.put(Thrown::Panic(panic));
                failed
            }
        };
        Err(error)
    }

    /// The answer of a fallible function: the value, this call's own
    /// error, or the cache's error as an `E`.
    fn answer<S, O>(&self, key: &str, cached: crate::Result<Option<S::Value>>) -> Result<O, E>
    where
        S: __private::Shape<O>,
        E: From<Error>,
    {
        let error = match cached.map(S::cached) {
            Ok(Some(output)) => return Ok(output),
            Ok(None) => not_a_value(key),
            Err(error) => error,
        };
        match self.take() {
            Some(Thrown::Error(own)) => Err(own),
            Some(Thrown::Panic(panic)) => std::panic::resume_unwind(panic),
            None => Err(E::from(error)),
        }
    }

    /// The answer of an infallible function, or the cache's error after
    /// which it runs its body itself (a panic of its own body resumes).
    fn answer_or_fallback<S, O>(
        &self,
        key: &str,
        cached: crate::Result<Option<S::Value>>,
    ) -> Result<O, Error>
    where
        S: __private::Shape<O>,
    {
        let error = match cached.map(S::cached) {
            Ok(Some(output)) => return Ok(output),
            Ok(None) => not_a_value(key),
            Err(error) => error,
        };
        if let Some(Thrown::Panic(panic)) = self.take() {
            std::panic::resume_unwind(panic);
        }
        tracing::warn!(
            key = %key, %error,
            "#[cached]: the cache failed; running the function without it"
        );
        Err(error)
    }
}

/// The body ran in this call's own load, and its value was lost after it.
fn lost(key: &str, error: &Error) -> ! {
    // Reached only when the value could not be encoded or the runtime shut
    // down during the load: the function's type has no way to say so (the
    // attribute's docs tell to return a `Result`).
    panic!(
        "#[cached] function, key {key:?}: the body ran but its value was lost ({error}); \
         return a Result to receive the cache's errors"
    )
}

/// The cached answer is a "not found", for a function that always returns
/// a value (another function's entry under the same key).
fn not_a_value(key: &str) -> Error {
    memo_error(
        ErrorKind::Serialization,
        format!(
            "the cache holds a \"not found\" for {}, and the function always returns a value \
             (do two functions share this key?)",
            crate::backend::KeyInMessage(key)
        ),
    )
}

fn memo_error(kind: ErrorKind, message: String) -> Error {
    Error::new(kind, "cached", message).with_operation("get_or_load")
}

/// The helpers the expansion of [`cached`](crate::cached) calls: not a
/// public API, no stability promised.
#[doc(hidden)]
pub mod __private {
    use std::fmt::Display;
    use std::future::Future;

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::{AssertUnwindSafe, Body, FutureExt, KeyPart, Stash, lost};
    use crate::cache::{Cache, Codec, EntryOptions, LoadContext};
    use crate::error::Error;

    /// How a function's output maps to what the cache stores.
    pub trait Shape<O> {
        /// The stored value.
        type Value: Serialize + DeserializeOwned + Send + 'static;
        /// The output as a loader's answer.
        fn loaded(output: O) -> Option<Self::Value>;
        /// The cache's answer as an output; `None` when it is not one.
        fn cached(value: Option<Self::Value>) -> Option<O>;
    }

    /// A function that always returns a value (`T`, `Result<T, E>`).
    #[derive(Debug, Clone, Copy)]
    pub struct Always;

    /// A function with a "not found" (`Option<T>`, `Result<Option<T>, E>`).
    #[derive(Debug, Clone, Copy)]
    pub struct Maybe;

    impl<T: Serialize + DeserializeOwned + Send + 'static> Shape<T> for Always {
        type Value = T;
        fn loaded(output: T) -> Option<T> {
            Some(output)
        }
        fn cached(value: Option<T>) -> Option<T> {
            value
        }
    }

    impl<T: Serialize + DeserializeOwned + Send + 'static> Shape<Option<T>> for Maybe {
        type Value = T;
        fn loaded(output: Option<T>) -> Option<T> {
            output
        }
        fn cached(value: Option<T>) -> Option<Option<T>> {
            Some(value)
        }
    }

    /// The loader a blocking cache gets.
    pub type BlockingLoader<T> =
        Box<dyn FnOnce(LoadContext) -> Result<Option<T>, Error> + Send + 'static>;

    /// Appends `:{part}` to a default key.
    pub fn key_part<K: KeyPart + ?Sized>(key: &mut String, part: &K) {
        key.push(':');
        part.write_key(key);
    }

    /// An `async fn` returning `Result<O, E>`.
    pub async fn fallible<C, S, O, E, B>(
        cache: &Cache<C>,
        key: &str,
        options: &EntryOptions,
        _shape: S,
        body: B,
    ) -> Result<O, E>
    where
        C: Codec,
        S: Shape<O>,
        B: Future<Output = Result<O, E>> + Send + 'static,
        E: From<Error> + Display + Send + 'static,
    {
        let stash = Stash::new(None);
        let loader = {
            let stash = stash.clone();
            move |_: LoadContext| async move {
                stash.loaded::<S, O>(AssertUnwindSafe(body).catch_unwind().await)
            }
        };
        let cached = cache.get_or_load(key, loader, options).await;
        stash.answer::<S, O>(key, cached)
    }

    /// An `async fn` returning `T` or `Option<T>`.
    pub async fn infallible<C, S, O, B>(
        cache: &Cache<C>,
        key: &str,
        options: &EntryOptions,
        _shape: S,
        body: B,
    ) -> O
    where
        C: Codec,
        S: Shape<O>,
        B: Future<Output = O> + Send + 'static,
    {
        let body = Body::new(Some(body));
        let stash = Stash::<Error>::new(None);
        let loader = {
            let (body, stash) = (body.clone(), stash.clone());
            move |_: LoadContext| async move {
                let body = body.take().ok_or_else(gone)?;
                stash.loaded::<S, O>(AssertUnwindSafe(body.map(Ok)).catch_unwind().await)
            }
        };
        let options = options.clone().no_timeouts();
        let cached = cache.get_or_load(key, loader, &options).await;
        match stash.answer_or_fallback::<S, O>(key, cached) {
            Ok(output) => output,
            Err(error) => match body.take() {
                Some(body) => body.await,
                None => lost(key, &error),
            },
        }
    }

    /// A `fn` returning `Result<O, E>`, over a blocking cache's
    /// `get_or_load` (called by `get_or_load`).
    pub fn blocking_fallible<S, O, E, B, G>(
        key: &str,
        options: &EntryOptions,
        _shape: S,
        body: B,
        get_or_load: G,
    ) -> Result<O, E>
    where
        S: Shape<O>,
        B: FnOnce() -> Result<O, E> + Send + 'static,
        E: From<Error> + Display + Send + 'static,
        G: FnOnce(&str, BlockingLoader<S::Value>, &EntryOptions) -> crate::Result<Option<S::Value>>,
    {
        let stash = Stash::new(None);
        let loader: BlockingLoader<S::Value> = {
            let stash = stash.clone();
            Box::new(move |_| {
                stash.loaded::<S, O>(std::panic::catch_unwind(AssertUnwindSafe(body)))
            })
        };
        let cached = get_or_load(key, loader, options);
        stash.answer::<S, O>(key, cached)
    }

    /// A `fn` returning `T` or `Option<T>`, over a blocking cache.
    pub fn blocking_infallible<S, O, B, G>(
        key: &str,
        options: &EntryOptions,
        _shape: S,
        body: B,
        get_or_load: G,
    ) -> O
    where
        S: Shape<O>,
        B: FnOnce() -> O + Send + 'static,
        G: FnOnce(&str, BlockingLoader<S::Value>, &EntryOptions) -> crate::Result<Option<S::Value>>,
    {
        let body = Body::new(Some(body));
        let stash = Stash::<Error>::new(None);
        let loader: BlockingLoader<S::Value> = {
            let (body, stash) = (body.clone(), stash.clone());
            Box::new(move |_| {
                let body = body.take().ok_or_else(gone)?;
                stash.loaded::<S, O>(std::panic::catch_unwind(AssertUnwindSafe(|| Ok(body()))))
            })
        };
        let options = options.clone().no_timeouts();
        let cached = get_or_load(key, loader, &options);
        match stash.answer_or_fallback::<S, O>(key, cached) {
            Ok(output) => output,
            Err(error) => match body.take() {
                Some(body) => body(),
                None => lost(key, &error),
            },
        }
    }

    /// The loader found no body: the caller took it back to run it itself,
    /// which it does only after the cache answered. Not reached; an error
    /// rather than a panic all the same.
    fn gone() -> Error {
        super::memo_error(
            crate::error::ErrorKind::Backend,
            "the function's body was already taken".to_owned(),
        )
    }
}
