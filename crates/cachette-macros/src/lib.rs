//! The `#[cached]` attribute of cachette. Use it as `cachette::cached`,
//! with cachette's `macros` feature (not a default feature); its
//! documentation is there.

#![deny(missing_docs)]

mod expand;
mod format;
mod options;
mod signature;

use proc_macro::TokenStream;

/// Memoizes a function in a `cachette::cache::Cache` through its
/// `get_or_load`:
/// concurrent calls with the same key share one run of the body
/// (single-flight), and the cache's soft TTL, fail-safe and negative
/// caching apply as they do to any load (see the `cachette::cache` module
/// docs). Needs cachette's `macros` feature,
/// which is not a default one.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use cachette::cache::Cache;
/// use tokio::sync::OnceCell;
///
/// static USERS: OnceCell<Cache> = OnceCell::const_new();
///
/// /// The cache, built on first use.
/// async fn users() -> cachette::Result<&'static Cache> {
///     USERS
///         .get_or_try_init(|| async { Cache::builder(cachette::open("memory://").await?).build().await })
///         .await
/// }
///
/// static QUERIES: AtomicUsize = AtomicUsize::new(0);
///
/// #[cachette::cached(cache = users().await?, ttl = "10m", key = "user:{id}", tags = ["team:{team}"])]
/// async fn user_name(id: u64, team: &str) -> Result<String, cachette::Error> {
///     QUERIES.fetch_add(1, Ordering::SeqCst); // e.g. SELECT name FROM users WHERE id = $1
///     Ok(format!("user {id} of {team}"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cachette::Result<()> {
/// assert_eq!(user_name(7, "core").await?, "user 7 of core");
/// assert_eq!(user_name(7, "core").await?, "user 7 of core"); // from the cache
/// assert_eq!(QUERIES.load(Ordering::SeqCst), 1);
///
/// users().await?.invalidate_tags(&["team:core"]).await?;
/// user_name(7, "core").await?;
/// assert_eq!(QUERIES.load(Ordering::SeqCst), 2);
/// # Ok(())
/// # }
/// ```
///
/// # Options
///
/// | option | meaning |
/// | --- | --- |
/// | `cache = <expr>` | required: the cache. Any expression `e` such that `&(e)` derefs to a `Cache<C>`: a `static CACHE: LazyLock<Cache>` (`cache = CACHE`), `&*CACHE`, a call returning `Cache` or `&Cache`, or `users().await?` as above. It is evaluated on every call, in the function, before the key: it may use the arguments, `.await` and, in a function returning `Result`, `?`. (Building a `Cache` is async, hence the `tokio::sync::OnceCell` of the example.) |
/// | `key = "…{arg}…"` | the key, a format over the arguments (each through `Display`, or the format spec written: `{id:?}`). Without it the key is built from all arguments (below) |
/// | `tags = ["…{arg}…", …]` | tags of the entry, formats like `key`, for `Cache::invalidate_tags` |
/// | `ttl`, `soft_ttl`, `negative_ttl`, `fail_safe`, `jitter` | durations as `"60s"`, `"5m"`, `"1h 30m"` or `"250ms"`, checked when the function compiles; they set the `EntryOptions` of the same name, and an option left out takes the cache's default |
/// | `crate = "…"` | the path of the cachette crate, `::cachette` unless given: where `Cargo.toml` renames the dependency (`cache = { package = "cachette", … }`), write `crate = "::cache"` |
///
/// The key is the key given to the cache, which stores it under its
/// namespace and version like any other.
///
/// # The default key
///
/// `{module_path}::{function}` followed by `:{argument}` for each argument,
/// each written by `cachette::KeyPart` (its docs give the format):
/// integers, `bool`, `char`, strings (escaped, so that `("a:b", "c")` and
/// `("a", "b:c")` give different keys), `Option`, tuples, slices and `Vec`,
/// and references, boxes and `Arc`s of those. An argument of another
/// type is a compile error (``…cannot form a cache key``): implement
/// `KeyPart` for it, or give a `key`. The default key does not name the
/// type of an associated function, nor the type parameters of a generic
/// function (`f::<u32>(1)` and `f::<u64>(1)` would share an entry): give
/// those a `key` that tells them apart. Moving or renaming
/// the function changes its default keys (the old entries expire with
/// their TTL).
///
/// # Return types
///
/// The return type is read from its spelling:
///
/// - **`Result<T, E>`** (any path ending in `Result`, such as
///   `cachette::Result<T>`): an `Err` is not cached. The call whose own
///   body failed gets its original `E` back; calls that waited for that
///   load (single-flight) get `E::from(cachette::Error)`, whose message
///   carries the original error's `Display`, and so does any call on a
///   cache error (the backend failed, a stored value does not decode, …).
///   So `E: From<cachette::Error> + Display + Send + 'static`
///   (`cachette::Error`, `anyhow::Error` and `Box<dyn Error + Send + Sync>`
///   qualify).
/// - **`Result<Option<T>, E>`**: the same, and `Ok(None)` is a "not found",
///   cached for the cache's negative TTL (`negative_ttl`) if it has one,
///   else not cached.
/// - **`Option<T>`**: `None` is a "not found", as above.
/// - **any other `T`**: always a value.
///
/// `Option<T>` and `T` cannot report a cache error: on one, the call logs
/// it (`tracing::warn!`) and runs the body without the cache. Such a
/// function's body is never cut short by the cache's `hard_timeout` (the
/// cache's timeouts do not apply to it). In one case the body has run and
/// its value is lost: the value could not be encoded, or the runtime shut
/// down while the body ran; the call then panics with the cache's error.
/// Give the function a `Result` return type to receive such errors.
///
/// The cached value `T` is `Serialize + DeserializeOwned + Send + 'static`.
/// A body that panics fails the load for the calls waiting for it (each
/// gets a cache error, or, for `T` and `Option<T>`, runs its own body), and
/// the panic resumes in the call whose body it was. Fail-safe applies
/// before all of this: when it serves a stale value instead of a failed
/// load, every call gets that value. With a soft TTL, a call that finds a
/// stale value returns it while the body refreshes it in the background;
/// an error or panic of that run reaches no call (it is counted in the
/// cache's `CacheStats::load_errors`).
///
/// # Arguments
///
/// The body runs as a load of its own (a tokio task for an `async fn`),
/// which must own what it uses (`'static`), so the arguments are moved into
/// it:
///
/// - an owned argument (`u64`, `String`, `Arc<Pool>`) is moved;
/// - a plain reference `&T` is copied with `ToOwned` before the load (a
///   `String` for `&str`, a `Vec` for `&[u8]`, a clone for `&T` where
///   `T: Clone`), and the body borrows that copy, so it reads as before.
///   Prefer `Arc<Pool>` to `&Pool` when a clone is costly;
/// - `&mut T`, and types holding references or lifetimes
///   (`Option<&str>`, `Cow<'a, str>`), are compile errors naming the
///   argument;
/// - arguments must be plain names: `(a, b): (u32, u32)` is a compile
///   error (take `pair: (u32, u32)` and destructure it in the body);
/// - methods taking `self` are refused: the body could not own `self`.
///
/// # Blocking functions
///
/// On a `fn` (not `async`), the attribute calls `get_or_load` on a
/// `cachette::blocking::Cache` (feature `blocking`) with a closure instead:
/// `cache = …` must then give a blocking cache. Everything else is as
/// above.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let expanded = options::Options::parse(args.into()).and_then(|options| {
        let function = syn::parse::<syn::ItemFn>(item.clone())?;
        expand::expand(&options, function)
    });
    match expanded {
        Ok(tokens) => tokens.into(),
        // The function is kept as it was, so that its callers do not add
        // errors of their own to the one that matters.
        Err(error) => {
            let mut tokens: TokenStream = error.to_compile_error().into();
            tokens.extend(item);
            tokens
        }
    }
}
