//! Return types the attribute cannot cache.
use cachette::cached;

static CACHE: std::sync::LazyLock<cachette::cache::Cache> = std::sync::LazyLock::new(|| unimplemented!());

#[cached(cache = CACHE, key = "k")]
async fn nothing(id: u32) {
    let _ = id;
}

#[cached(cache = CACHE, key = "k")]
async fn opaque(id: u32) -> impl std::fmt::Display {
    id
}

fn main() {}
