//! Mistakes in the attribute's options.
use cachette::cached;

static CACHE: std::sync::LazyLock<cachette::cache::Cache> = std::sync::LazyLock::new(|| unimplemented!());

#[cached(ttl = "60s")]
async fn no_cache(id: u32) -> u32 {
    id
}

#[cached(cache = CACHE, time_to_live = "60s")]
async fn unknown_option(id: u32) -> u32 {
    id
}

#[cached(cache = CACHE, ttl = "sixty seconds")]
async fn bad_duration(id: u32) -> u32 {
    id
}

#[cached(cache = CACHE, ttl = "0s")]
async fn zero_duration(id: u32) -> u32 {
    id
}

#[cached(cache = CACHE, ttl = "10s", soft_ttl = "1m")]
async fn soft_ttl_above_ttl(id: u32) -> u32 {
    id
}

fn main() {}
