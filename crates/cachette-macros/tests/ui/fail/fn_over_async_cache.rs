//! A `fn` (not `async`) needs a blocking cache.
use cachette::cached;

static CACHE: std::sync::LazyLock<cachette::cache::Cache> = std::sync::LazyLock::new(|| unimplemented!());

#[cached(cache = CACHE, key = "k")]
fn blocking(id: u32) -> u32 {
    id
}

fn main() {}
